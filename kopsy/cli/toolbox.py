"""``kopsy toolbox dump`` and ``kopsy toolbox operator-policy`` (as ``kops toolbox dump``)."""

from __future__ import annotations

import click

from kopsy.cli.context import aws_clients, open_cluster_store, options, resolve_cluster_name, state_url
from kopsy.cli.output import emit


@click.group()
def command() -> None:
    """Tools for bug reports and operators: dump, operator-policy."""


@command.command("dump")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--ssh/--no-ssh", default=True, show_default=True,
              help="Ask a control plane over SSH for the Kubernetes nodes.")
@click.option("--ssh-user", metavar="USER", help="Login user (beats the ssh config's User; default ubuntu).")
@click.option("--ssh-key", type=click.Path(dir_okay=False, exists=True), metavar="PATH", help="Private key to log in with.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
              help="ssh config file (default ~/.ssh/config).")
@click.option("--bastion", metavar="[USER@]HOST[:PORT]", help="Jump host for instances without public addresses.")
def dump(name: str | None, output: str, ssh: bool, ssh_user: str | None, ssh_key: str | None,
         ssh_config: str | None, bastion: str | None) -> None:
    """Every cloud resource, instance and (over SSH) node of a cluster, for bug reports. No secrets.

    \b
      kopsy toolbox dump demo.example.com -o yaml > dump.yaml
    """
    from kopsy.cli.validate import ssh_settings
    from kopsy.toolbox.dump import dump_cluster

    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, name or options().cluster_name)
    cluster, _ = store.get_cluster(cluster_name)
    clients = aws_clients(cluster.region or None)
    connector = None
    if ssh:
        from kopsy.remote import SSHConnector

        settings = ssh_settings(cluster, ssh_user=ssh_user, ssh_key=ssh_key, ssh_config=ssh_config, bastion=bastion,
                                connect_timeout=10.0, command_timeout=30.0)
        connector = SSHConnector(settings)
    try:
        result = dump_cluster(clients, cluster_name, cluster.region, connector, private=bool(bastion))
    finally:
        if connector is not None:
            connector.close()
    emit(result.as_dict(), output)


@command.command("operator-policy")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
@click.option("--bucket", metavar="BUCKET", help="State bucket to scope the S3 actions to (default: the --state bucket).")
def operator_policy_command(output: str, bucket: str | None) -> None:
    """The least-privilege IAM policy to run create, update, validate and delete.

    \b
      kopsy toolbox operator-policy --state s3://my-state > kopsy-operator.json
      aws iam create-policy --policy-name kopsy-operator --policy-document file://kopsy-operator.json
    """
    from urllib.parse import urlparse

    from kopsy.toolbox.operator_policy import operator_policy

    if bucket is None and options().state:
        url = urlparse(state_url())
        bucket = url.netloc if url.scheme == "s3" else None
    emit(operator_policy(bucket), output)
