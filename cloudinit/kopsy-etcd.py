"""kopsy's etcd operations on a control plane (stdlib only), run as ``kopsy-helper etcd-...``.

Installed beside the helper as /usr/local/lib/kopsy/kopsy_etcd.py on control planes only; it
uses the helper's SigV4 S3 calls (instance role) and Debian/kubeadm's ``etcdctl``.

  etcd-snapshot [--if-leader] [--prune]   snapshot etcd into <store>/backups/etcd/<RFC 3339 UTC>/
                                          (snapshot.db + meta.json, SSE); prints one JSON line
  etcd-prune                              delete snapshots outside the retention (hourly, daily)
  etcd-boot-decision                      prints "restore <TS>", "init" or "no-snapshot"
  etcd-mark-first-boot                    record in the store that this cluster has booted
  etcd-restore --backup TS|newest --name N --peer-url URL [--initial-cluster ...] [--token T]
  etcd-remove-member --name N             exit 0 when removed or absent; 2 if quorum would break
  etcd-cleanup --self NAME                remove members whose instances no longer run, one at a time
  etcd-drop-apiserver-leases              delete the API servers' leases (after a restore)
  etcd-static-pods stop|start-etcd|start  park / bring back the control-plane static pods (restore)
  etcd-members                            the members: name, id, started, healthy, learner (JSON)

Exit codes: 0 done, 1 failed, 2 refused (quorum). Never prints object contents.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from xml.etree import ElementTree

PREFIX = "backups/etcd/"
MARKER = PREFIX + "first-boot.json"
# Overridable for tests only (a plain-http etcd on loopback, moto's EC2):
PKI = os.environ.get("KOPSY_ETCD_PKI", "/etc/kubernetes/pki/etcd")  # "none": no TLS flags
LOCAL = os.environ.get("KOPSY_ETCD_ENDPOINT", "https://127.0.0.1:2379")
ENDPOINTS = os.environ.get("KOPSY_ETCD_ENDPOINTS", "")  # the cluster's client URLs, for a joining node
EC2_ENDPOINT = os.environ.get("KOPSY_EC2_ENDPOINT", "")
WORK = os.environ.get("KOPSY_ETCD_WORK", "/var/lib/kopsy/etcd")
DATA_DIR = "/var/lib/etcd"
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Failed(Exception):
    code = 1


class Refused(Failed):
    code = 2


def log(msg):
    sys.stderr.write("kopsy-helper: %s\n" % msg)


def seconds(text):
    """'15m' -> 900 (one number and one unit of s, m, h, d: what the spec allows)."""
    m = re.match(r"^(\d+)([smhd])$", text or "")
    if not m:
        raise Failed("duration %r is not <number><s|m|h|d>" % text)
    return int(m.group(1)) * _UNITS[m.group(2)]


def etcdctl(args, endpoints=None, timeout=120, command_timeout="15s"):
    cmd = ["etcdctl", "--endpoints", ",".join(endpoints or [LOCAL]), "--dial-timeout=3s", "--command-timeout=" + command_timeout]
    if PKI != "none":
        cmd += ["--cacert", PKI + "/ca.crt", "--cert", PKI + "/healthcheck-client.crt", "--key", PKI + "/healthcheck-client.key"]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, ETCDCTL_API="3"))
    if r.returncode:
        raise Failed("etcdctl %s: %s" % (args[0] if args else "", (r.stderr or r.stdout).strip().splitlines()[-1:]))
    return r.stdout


def local_status():
    return json.loads(etcdctl(["endpoint", "status", "-w", "json"]))[0]["Status"]


def members(endpoints=None):
    return json.loads(etcdctl(["member", "list", "-w", "json"], endpoints)).get("members", [])


def healthy(member):
    """True when the member answers on one of its client URLs (an unstarted member has none)."""
    for url in member.get("clientURLs") or []:
        try:
            etcdctl(["endpoint", "health"], [url], timeout=20, command_timeout="3s")
            return True
        except (Failed, subprocess.TimeoutExpired):
            pass
    return False


def quorum_after_removal(voters, healthy_names, name):
    """Whether removing voting member ``name`` still leaves a healthy majority (pure)."""
    remaining = [v for v in voters if v != name]
    alive = [v for v in remaining if v in healthy_names]
    return bool(remaining) and len(alive) >= len(remaining) // 2 + 1


def _label(m):
    return m.get("name") or "%x" % int(m["ID"])  # an added but never started member has no name yet


def remove_member(name, endpoints=None, member_id=None):
    """Remove member ``name`` (or the one with ``member_id``); absent is success; a removal that
    would break quorum is refused."""
    ms = members(endpoints)
    target = [m for m in ms if (m.get("name") == name if member_id is None else int(m["ID"]) == member_id)]
    if not target:
        log("etcd member %s is not in the cluster (already removed)" % name)
        return False
    voters = [_label(m) for m in ms if not m.get("isLearner")]
    alive = {_label(m) for m in ms if not m.get("isLearner") and healthy(m)}
    label = _label(target[0])
    if not target[0].get("isLearner") and not quorum_after_removal(voters, alive, label):
        raise Refused("removing etcd member %s would leave %d healthy of %d members: below quorum, refused"
                      % (label, len(alive - {label}), len(voters) - 1))
    etcdctl(["member", "remove", "%x" % int(target[0]["ID"])], endpoints)
    log("removed etcd member %s" % label)
    return True


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _sse(cfg):
    key = cfg.get("stateStoreKmsKey") or ""
    if key:
        return {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key}
    return {"x-amz-server-side-encryption": "AES256"}


def snapshot(cfg, helper, if_leader=False):
    """Snapshot the local member into the store; the summary kopsy's CLI and rolling update read."""
    status = local_status()
    if if_leader and status.get("leader") != status.get("header", {}).get("member_id"):
        return {"skipped": "this member is not the etcd leader"}
    os.makedirs(WORK, mode=0o700, exist_ok=True)
    path = os.path.join(WORK, "snapshot.db")
    try:
        etcdctl(["snapshot", "save", path], timeout=600)
        info = json.loads(etcdctl(["snapshot", "status", path, "-w", "json"]))
        with open(path, "rb") as f:
            body = f.read()
    finally:
        if os.path.exists(path):
            os.unlink(path)
    ts = _now().strftime(TS_FORMAT)
    meta = {
        "timestamp": ts,
        "revision": int(info.get("revision", 0)),
        "members": len(members()),
        "kubernetesVersion": cfg.get("kubernetesVersion", ""),
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    key = PREFIX + ts + "/snapshot.db"
    helper.s3_request(cfg, "PUT", key, body, extra=_sse(cfg))
    helper.s3_request(cfg, "PUT", PREFIX + ts + "/meta.json", json.dumps(meta, sort_keys=True).encode(), extra=_sse(cfg))
    log("etcd snapshot %s stored (revision %d, %d bytes)" % (ts, meta["revision"], meta["size"]))
    return {"timestamp": ts, "key": key, "revision": meta["revision"], "size": meta["size"], "sha256": meta["sha256"]}


def backups(cfg, helper):
    """Timestamps that have both a snapshot and its metadata, oldest first."""
    found = {}
    for key in helper.list_keys(cfg, PREFIX):
        parts = key[len(PREFIX):].split("/")
        if len(parts) == 2 and _TS.match(parts[0]):
            found.setdefault(parts[0], set()).add(parts[1])
    return sorted(ts for ts, names in found.items() if {"snapshot.db", "meta.json"} <= names)


def to_prune(stamps, now, hourly, daily, keep_all=3600):
    """Snapshots outside the retention (pure): everything from the last ``keep_all`` seconds, then
    the newest of each hour for ``hourly`` seconds and of each day for ``daily``; the newest always."""
    keep, hours, days = set(), set(), set()
    for ts in sorted(stamps, reverse=True):
        t = datetime.datetime.strptime(ts, TS_FORMAT).replace(tzinfo=datetime.timezone.utc)
        age = (now - t).total_seconds()
        if not keep or age <= keep_all:
            keep.add(ts)
        if age <= hourly and ts[:13] not in hours:
            hours.add(ts[:13])
            keep.add(ts)
        if age <= daily and ts[:10] not in days:
            days.add(ts[:10])
            keep.add(ts)
    return sorted(set(stamps) - keep)


def prune(cfg, helper):
    hourly = seconds(cfg.get("etcdBackupHourly") or "7d")
    daily = seconds(cfg.get("etcdBackupDaily") or "90d")
    gone = to_prune(backups(cfg, helper), _now(), hourly, daily)
    for ts in gone:
        for name in ("snapshot.db", "meta.json"):
            helper.s3_request(cfg, "DELETE", PREFIX + ts + "/" + name)
    if gone:
        log("pruned %d etcd snapshot(s) outside the retention" % len(gone))
    return gone


def boot_decision(cfg, helper):
    """What a control plane that finds no API does: restore the newest snapshot, init a new
    cluster (only if the store records no first boot), or fail (booted before, no snapshot)."""
    stamps = backups(cfg, helper)
    if stamps:
        return "restore " + stamps[-1]
    if MARKER in helper.list_keys(cfg, MARKER):
        return "no-snapshot"
    return "init"


def mark_first_boot(cfg, helper, node):
    body = json.dumps({"firstBoot": _now().strftime(TS_FORMAT), "node": node}).encode()
    if MARKER not in helper.list_keys(cfg, MARKER):
        helper.s3_request(cfg, "PUT", MARKER, body, extra=_sse(cfg))


def restore(cfg, helper, backup, name, peer_url, initial_cluster="", token="", data_dir=DATA_DIR):
    """Restore snapshot ``backup`` into a fresh ``data_dir`` (the old one is kept aside, not deleted)."""
    if backup == "newest":
        stamps = backups(cfg, helper)
        if not stamps:
            raise Failed("no snapshot in %s/%s to restore from" % (cfg["stateStore"], PREFIX))
        backup = stamps[-1]
    if not _TS.match(backup):
        raise Failed("backup %r is not an RFC 3339 UTC timestamp like 2026-12-02T01:00:00Z" % backup)
    meta = json.loads(helper.s3_request(cfg, "GET", PREFIX + backup + "/meta.json"))
    body = helper.s3_request(cfg, "GET", PREFIX + backup + "/snapshot.db")
    if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
        raise Failed("snapshot %s does not match the sha256 in its metadata: not restoring it" % backup)
    os.makedirs(WORK, mode=0o700, exist_ok=True)
    path = os.path.join(WORK, "restore.db")
    helper.write_atomic(path, body, 0o600)
    fresh = data_dir.rstrip("/") + ".kopsy-restore"
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        etcdctl(["snapshot", "restore", path, "--name", name, "--data-dir", fresh,
                 "--initial-cluster", initial_cluster or "%s=%s" % (name, peer_url),
                 "--initial-cluster-token", token or "kopsy-" + uuid.uuid4().hex[:12],
                 "--initial-advertise-peer-urls", peer_url], timeout=600)
    finally:
        os.unlink(path)
    if os.path.exists(data_dir):
        aside = "%s.before-restore-%s" % (data_dir.rstrip("/"), _now().strftime("%Y%m%dT%H%M%SZ"))
        os.rename(data_dir, aside)
        log("kept the previous etcd data dir as %s" % aside)
    os.rename(fresh, data_dir)
    log("restored etcd snapshot %s (revision %s) into %s" % (backup, meta.get("revision"), data_dir))
    return {"timestamp": backup, "revision": meta.get("revision"), "dataDir": data_dir}


def _ec2_instances(cfg, helper):
    """(private DNS name, private IP) of the cluster's pending/running instances (DescribeInstances)."""
    region = cfg.get("s3Region") or helper.imds("meta-data/placement/region").strip()
    url = EC2_ENDPOINT or cfg.get("ec2Endpoint") or "https://ec2.%s.amazonaws.com/" % region
    found, token = [], ""
    while True:
        form = [("Action", "DescribeInstances"), ("Version", "2016-11-15"), ("MaxResults", "1000"),
                ("Filter.1.Name", "tag:kopsy.io/cluster"), ("Filter.1.Value.1", cfg["clusterName"]),
                ("Filter.2.Name", "instance-state-name"), ("Filter.2.Value.1", "pending"), ("Filter.2.Value.2", "running")]
        body = urllib.parse.urlencode(form + ([("NextToken", token)] if token else [])).encode()
        headers = helper.sign("POST", url, region, helper.credentials(), hashlib.sha256(body).hexdigest(), _now(),
                              {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, service="ec2")
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                root = ElementTree.fromstring(r.read())
        except (OSError, ElementTree.ParseError) as e:  # URLError and HTTPError are OSErrors
            raise Failed("DescribeInstances at %s: %s" % (url, e)) from None
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for item in root.iter(ns + "instancesSet"):
            for inst in item.findall(ns + "item"):
                found.append((inst.findtext(ns + "privateDnsName") or "", inst.findtext(ns + "privateIpAddress") or ""))
        token = root.findtext(ns + "nextToken") or ""
        if not token:
            return found


def cleanup(cfg, helper, me):
    """Before joining: remove the members whose instances no longer run, one at a time, each
    only if quorum holds without it (``remove_member`` refuses otherwise)."""
    running = _ec2_instances(cfg, helper)
    names = {n for n, _ in running if n}
    endpoints = [u for u in ENDPOINTS.split(",") if u] or ["https://%s:2379" % ip for n, ip in running if ip and n != me]
    if not endpoints:
        raise Failed("no other control plane runs: nothing to join")
    ips = {ip for _, ip in running if ip}
    removed = []
    for m in members(endpoints):
        name = m.get("name", "")
        hosts = {urllib.parse.urlsplit(u).hostname for u in m.get("peerURLs") or []}
        if name and (name not in names or name == me):  # gone, or a previous life of this node
            remove_member(name, endpoints)
            removed.append(name)
        elif not name and not hosts & (ips - {None}):  # added by a join whose instance is gone
            remove_member(_label(m), endpoints, member_id=int(m["ID"]))
            removed.append(_label(m))
    return removed


def member_report(endpoints=None):
    """What ``etcd-members`` prints: one entry per member, healthy meaning it answers."""
    return [{"name": m.get("name", ""), "id": "%x" % int(m["ID"]), "started": bool(m.get("name")),
             "healthy": healthy(m), "learner": bool(m.get("isLearner"))} for m in members(endpoints)]


def drop_apiserver_leases(wait=300):
    """After a restore the old API servers' identity and endpoint leases point at dead instances.
    Waits for etcd to answer first: every member must be started before it has a quorum."""
    deadline = time.monotonic() + wait
    while True:
        try:
            for prefix in ("/registry/leases/kube-system/apiserver-", "/registry/masterleases/"):
                etcdctl(["del", "--prefix", prefix])
            return
        except (Failed, subprocess.TimeoutExpired) as e:
            if time.monotonic() > deadline:
                raise Failed("etcd did not answer within %ds: %s" % (wait, e))
            time.sleep(5)


MANIFESTS = "/etc/kubernetes/manifests"
PARKED = "/etc/kubernetes/manifests.kopsy-stopped"


def static_pods(action, wait=180):
    """stop: park every static pod manifest (the kubelet then stops etcd and the API server) and
    wait until their containers are gone; start-etcd: bring back etcd alone; start: the rest."""
    os.makedirs(PARKED, mode=0o700, exist_ok=True)
    src, dst = (MANIFESTS, PARKED) if action == "stop" else (PARKED, MANIFESTS)
    names = sorted(n for n in os.listdir(src) if n.endswith(".yaml"))
    for name in (["etcd.yaml"] if action == "start-etcd" else names):
        if os.path.exists(os.path.join(src, name)):
            os.rename(os.path.join(src, name), os.path.join(dst, name))
    if action != "stop":
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            r = subprocess.run(["crictl", "ps", "-q", "--name", "^(etcd|kube-apiserver)$"], capture_output=True,
                               text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Failed("cannot ask the container runtime whether etcd stopped: %s" % e)
        if r.returncode == 0 and not r.stdout.strip():
            return
        if time.monotonic() > deadline:
            raise Failed("etcd and the API server were still running %ds after their manifests were parked" % wait)
        time.sleep(2)


def main(argv, helper):
    p = argparse.ArgumentParser(prog="kopsy-helper")
    p.add_argument("--config", default=helper.CONFIG)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("etcd-snapshot")
    s.add_argument("--if-leader", action="store_true")
    s.add_argument("--prune", action="store_true")
    sub.add_parser("etcd-prune")
    sub.add_parser("etcd-boot-decision")
    f = sub.add_parser("etcd-mark-first-boot")
    f.add_argument("--node", default="")
    r = sub.add_parser("etcd-restore")
    r.add_argument("--backup", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--peer-url", required=True)
    r.add_argument("--initial-cluster", default="")
    r.add_argument("--token", default="")
    r.add_argument("--data-dir", default=DATA_DIR)
    m = sub.add_parser("etcd-remove-member")
    m.add_argument("--name", required=True)
    c = sub.add_parser("etcd-cleanup")
    c.add_argument("--self", dest="me", required=True)
    sub.add_parser("etcd-drop-apiserver-leases")
    sub.add_parser("etcd-members")
    sp = sub.add_parser("etcd-static-pods")
    sp.add_argument("action", choices=("stop", "start-etcd", "start"))
    a = p.parse_args(argv)
    try:
        cfg = {}
        if a.cmd not in ("etcd-remove-member", "etcd-drop-apiserver-leases", "etcd-static-pods", "etcd-members"):
            with open(a.config) as fh:
                cfg = json.load(fh)
        if a.cmd == "etcd-snapshot":
            out = snapshot(cfg, helper, a.if_leader)
            if a.prune and "skipped" not in out:
                prune(cfg, helper)
            print(json.dumps(out, sort_keys=True))
        elif a.cmd == "etcd-prune":
            print(json.dumps({"pruned": prune(cfg, helper)}))
        elif a.cmd == "etcd-boot-decision":
            print(boot_decision(cfg, helper))
        elif a.cmd == "etcd-mark-first-boot":
            mark_first_boot(cfg, helper, a.node)
        elif a.cmd == "etcd-restore":
            print(json.dumps(restore(cfg, helper, a.backup, a.name, a.peer_url, a.initial_cluster, a.token, a.data_dir)))
        elif a.cmd == "etcd-remove-member":
            removed = remove_member(a.name, [u for u in ENDPOINTS.split(",") if u] or None)
            print(json.dumps({"name": a.name, "removed": removed}))
        elif a.cmd == "etcd-cleanup":
            print(json.dumps({"removed": cleanup(cfg, helper, a.me)}))
        elif a.cmd == "etcd-members":
            print(json.dumps(member_report([u for u in ENDPOINTS.split(",") if u] or None), sort_keys=True))
        elif a.cmd == "etcd-static-pods":
            static_pods(a.action)
        else:
            drop_apiserver_leases()
    except Failed as e:
        log(str(e))
        return e.code
    return 0
