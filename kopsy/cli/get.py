"""``kopsy get clusters|cluster|instancegroups|ig``: read the store, print tables or documents."""

from __future__ import annotations

import click

from kopsy.cli.context import open_cluster_store, resolve_cluster_name, warn
from kopsy.cli.output import OUTPUT_FORMATS, emit, table
from kopsy.errors import KopsyError, StateStoreError
from kopsy.spec.model import cluster_to_dict, instance_group_to_dict


class NoClusters(KopsyError):
    def __init__(self) -> None:
        super().__init__("no clusters in this state store; create one with: kopsy create cluster NAME --zones ZONES")


ALIASES = {"secret": "secrets", "instance": "instances", "cluster": "clusters", "instancegroup": "instancegroups", "ig": "instancegroups", "igs": "instancegroups"}


class AliasGroup(click.Group):
    """A group whose commands also answer to kops' singular and short names (ig, cluster)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[no-untyped-def]
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else None), cmd, rest


@click.group(cls=AliasGroup)
def command() -> None:
    """List clusters, instance groups, secrets and instances."""


@command.command("clusters")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_clusters(names: tuple[str, ...], output: str) -> None:
    """Clusters in the state store (also: get cluster NAME -o yaml)."""
    store = open_cluster_store()
    wanted = list(names) or store.list_clusters()
    clusters = []
    for name in wanted:
        try:
            cluster, _ = store.get_cluster(name)
        except StateStoreError as exc:
            if names:
                raise
            # Listing everything: one damaged or foreign config must not hide every other cluster.
            warn(f"skipping {exc.message}")
            continue
        clusters.append(cluster)
    if output == "table":
        if not clusters:
            raise NoClusters()
        click.echo(table(["NAME", "CLOUD", "ZONES"], [[c.name, "aws", ",".join(c.zones)] for c in clusters]))
        return
    docs = [cluster_to_dict(c) for c in clusters]
    emit(docs[0] if len(docs) == 1 and names else docs, output)


@command.command("instancegroups")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_instance_groups(names: tuple[str, ...], output: str) -> None:
    """Instance groups of a cluster (--name, or the only cluster in the store)."""
    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, None)
    _, _, entries = store.read_spec(cluster_name)
    groups = [ig for ig, _ in entries]
    if names:
        missing = set(names) - {ig.name for ig in groups}
        if missing:
            raise KopsyError(
                f"instance group(s) {', '.join(sorted(missing))} not found in cluster {cluster_name}; "
                f"it has: {', '.join(ig.name for ig in groups)}"
            )
        groups = [ig for ig in groups if ig.name in names]
    if output == "table":
        rows = [[ig.name, ig.role, ig.machine_type, ig.min_size, ig.max_size, ",".join(ig.subnets)] for ig in groups]
        click.echo(table(["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "ZONES"], rows))
        return
    docs = [instance_group_to_dict(ig) for ig in groups]
    emit(docs[0] if len(docs) == 1 and names else docs, output)


def _store_reader(store, cluster_name: str):  # type: ignore[no-untyped-def]
    """A ``kopsy.pki.inventory.Reader`` over the cluster's objects in the store."""
    from kopsy.errors import ObjectNotFound
    from kopsy.pki.inventory import Stored

    def read(relkey: str) -> Stored | None:
        try:
            obj = store.store.get(f"{cluster_name}/{relkey}")
        except ObjectNotFound:
            return None
        return Stored(obj.data, obj.modified)

    return read


@command.command("secrets")
@click.argument("name", required=False)
@click.option("--type", "type_", metavar="TYPE", help="Only this type: Keypair, Secret or SSHPublicKey.")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json", "plaintext"]), default="table",
              show_default=True, help="plaintext prints one named secret's value (never a private key).")
def get_secrets(name: str | None, type_: str | None, output: str) -> None:
    """Keypairs and secrets of a cluster: type, id, created; never their values.

    \b
      kopsy get secrets
      kopsy get secrets --type Secret
      kopsy get secrets bootstrap-token -o plaintext    # prints the secret value
    """
    from kopsy.errors import UsageError
    from kopsy.pki.inventory import list_secrets, plaintext

    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, None)
    read = _store_reader(store, cluster_name)
    if output == "plaintext":
        if not name:
            raise UsageError("-o plaintext prints one secret's value: name it, e.g. kopsy get secrets bootstrap-token -o plaintext")
        kind, value = plaintext(read, name)
        if kind == "Secret":
            click.echo(f"Warning: printing the value of secret {name!r} of cluster {cluster_name}; "
                       f"it grants access to the cluster, keep it out of logs and tickets", err=True)
        click.echo(value.decode("utf-8", "replace").strip())
        return
    entries = list_secrets(read, name, type_)
    if output == "table":
        click.echo(table(["TYPE", "NAME", "ID", "CREATED"], [[e.type, e.name, e.id, e.created] for e in entries]))
        return
    docs = [e.as_dict() for e in entries]
    emit(docs[0] if name and len(docs) == 1 else docs, output)


@command.command("etcd-backups")
@click.argument("names", nargs=-1, metavar="[NAME]")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_etcd_backups(names: tuple[str, ...], output: str) -> None:
    """etcd snapshots of a cluster in the state store, newest first."""
    from kopsy.cli.context import strip_cluster_word
    from kopsy.etcd.backups import age, list_backups
    from kopsy.text import printable

    store = open_cluster_store()
    name = resolve_cluster_name(store, strip_cluster_word(names))
    store.get_cluster(name)  # a missing cluster says so, not "no backups"
    backups = list_backups(store, name)
    if output != "table":
        emit([b.to_dict() for b in backups], output)
        return
    if not backups:
        click.echo(f"No etcd snapshots of {name} yet (control planes take one every backup interval; "
                   f"kopsy backup etcd {name} takes one now)")
        return
    click.echo(table(["TIMESTAMP", "AGE", "SIZE", "REVISION", "K8S-VERSION"],
                     [[b.timestamp, age(b.timestamp), b.size, b.revision, printable(b.kubernetes_version or "-", 40)]
                      for b in backups]))


@command.command("instances")
@click.argument("name", required=False)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@click.option("--no-ssh", is_flag=True, help="Do not ask a control plane for the nodes' kubelet versions.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
              metavar="PATH", help="OpenSSH config to resolve hosts with (default ~/.ssh/config).")
def get_instances(name: str | None, output: str, no_ssh: bool, ssh_config: str | None) -> None:
    """Instances of a cluster: node, rollout status, role, state, address, group, type, version.

    STATUS is UpToDate, NeedsUpdate (an older launch-template version, or marked by a
    rolling update) or Detached (taken out of its group by a rolling update's surge).
    K8S-VERSION is the kubelet's, asked of a control plane over SSH ('-' when none answers).
    """
    from kopsy.cli.context import aws_clients
    from kopsy.cloud.aws.groups import read_groups
    from kopsy.rolling.selection import instance_status, plan_groups

    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, name)
    _, (cluster, _), groups = store.read_spec(cluster_name)
    igs = [ig for ig, _ in groups]
    clients = aws_clients(cluster.region or None)
    inv = read_groups(clients, cluster_name, states=("pending", "running", "stopping", "stopped", "shutting-down"))
    plans = plan_groups(cluster_name, igs, inv)
    versions = {} if no_ssh else _kubelet_versions(cluster, inv, ssh_config)
    members = {m.id: m for g in inv.groups.values() for m in g.members}
    found = []
    for i in sorted(inv.instances.values(), key=lambda i: (i.instance_group, i.id)):
        m = members.get(i.id)
        found.append({
            "id": i.id, "nodeName": i.private_dns, "status": instance_status(i, plans),
            "roles": "control-plane" if i.role == "ControlPlane" else (i.role.lower() or "node"),
            "state": i.state, "internalIP": i.private_ip, "instanceGroup": i.instance_group,
            "machineType": i.instance_type, "kubernetesVersion": versions.get(i.id, ""),
            "zone": i.zone, "publicIp": i.public_ip,
            "launchTemplateVersion": (m.launch_template_version if m else "") or i.launch_template_version,
        })
    if output != "table":
        emit(found, output)
        return
    rows = [[f["id"], f["nodeName"] or "-", f["status"], f["roles"], f["state"], f["internalIP"] or "-",
             f["instanceGroup"] or "-", f["machineType"], f["kubernetesVersion"] or "-"] for f in found]
    click.echo(table(["ID", "NODE-NAME", "STATUS", "ROLES", "STATE", "INTERNAL-IP", "INSTANCE-GROUP", "MACHINE-TYPE",
                      "K8S-VERSION"], rows))


def _kubelet_versions(cluster, inv, ssh_config: str | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """instance id -> kubelet version, from ``kubectl get nodes`` on the first control plane
    that answers; empty (and a warning) when none does: the listing itself needs only AWS."""
    from kopsy.cli.validate import ssh_settings
    from kopsy.errors import SSHError
    from kopsy.remote import SSHConnector
    from kopsy.validate.checks import match_nodes
    from kopsy.validate.engine import ssh_address
    from kopsy.validate.facts import CMD_NODES, FactError, parse_node_list

    cps = [i for i in inv.instances.values() if i.role == "ControlPlane" and i.state == "running"]
    if not cps:
        return {}
    settings = ssh_settings(cluster, ssh_user=None, ssh_key=None, ssh_config=ssh_config, bastion=None,
                            connect_timeout=5.0, command_timeout=20.0)
    connector = SSHConnector(settings)
    problem = ""
    for cp in cps:
        try:
            with connector.connect(ssh_address(cp, private=False)) as conn:
                r = conn.run(CMD_NODES)
            if r.ok:
                nodes = parse_node_list(r.stdout)
                return {iid: n.kubelet_version for iid, n in match_nodes(list(inv.instances.values()), nodes).items()}
            problem = r.stderr.strip()[-120:] or f"exit {r.exit_status}"
        except (SSHError, FactError) as exc:
            problem = str(exc)
        finally:
            connector.close()
    warn(f"no control plane answered for the nodes' versions ({problem}); K8S-VERSION shows '-'")
    return {}
