"""Bad input: every case exits non-zero with one readable line, no traceback, and an unchanged store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e  # drives the real kopsy executable against moto server

NAME = "demo.example.com"
GOOD_ZONES = ["--zones", "us-east-1a"]


def cluster_docs(run_kopsy, env, pub: Path) -> list[dict]:
    r = run_kopsy(["create", "cluster", "file.example.com", "--zones", "us-east-1a,us-east-1b",
                   "--ssh-public-key", str(pub), "--dry-run"], env)
    assert r.returncode == 0, r.stderr
    return list(yaml.safe_load_all(r.stdout))


def mutate(path: str, value: object):
    """A spec-file mutation: set the dotted ``path`` (list indexes allowed) in document 0/1/2."""

    def apply(docs: list[dict]) -> list[dict]:
        doc_index, *keys = path.split(".")
        node: object = docs[int(doc_index)]
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value  # type: ignore[index]
        return docs

    return apply


# (id, argv after "kopsy", expected exit code, text the error line must contain)
FLAG_CASES = [
    ("bad-name", ["create", "cluster", "Bad_Name", *GOOD_ZONES], 1, "not a valid DNS-1123 name"),
    ("long-name", ["create", "cluster", "a" * 60 + ".com", *GOOD_ZONES], 1, "longer than 50"),
    ("trailing-dot", ["create", "cluster", "a.b.", *GOOD_ZONES], 1, "DNS-1123"),
    ("two-regions", ["create", "cluster", NAME, "--zones", "us-east-1a,eu-west-1b"], 1, "one region"),
    ("bad-zone", ["create", "cluster", NAME, "--zones", "useast1"], 1, "not an AWS availability zone"),
    ("empty-zones", ["create", "cluster", NAME, "--zones", ","], 1, "at least one availability zone"),
    ("cidr-33", ["create", "cluster", NAME, *GOOD_ZONES, "--network-cidr", "10.0.0.0/33"], 1, "--network-cidr"),
    ("cidr-host-bits", ["create", "cluster", NAME, *GOOD_ZONES, "--network-cidr", "10.0.0.1/16"], 1, "--network-cidr"),
    ("cidr-ipv6", ["create", "cluster", NAME, *GOOD_ZONES, "--network-cidr", "fd00::/48"], 1, "IPv"),
    ("cidr-too-big", ["create", "cluster", NAME, *GOOD_ZONES, "--network-cidr", "10.0.0.0/8"], 1, "between /16 and /28"),
    ("cidr-garbage", ["create", "cluster", NAME, *GOOD_ZONES, "--network-cidr", "banana"], 1, "not a CIDR"),
    ("cp-count-2", ["create", "cluster", NAME, *GOOD_ZONES, "--control-plane-count", "2"], 1, "1, 3 or 5"),
    ("cp-count-0", ["create", "cluster", NAME, *GOOD_ZONES, "--control-plane-count", "0"], 1, "1, 3 or 5"),
    ("cp-count-word", ["create", "cluster", NAME, *GOOD_ZONES, "--control-plane-count", "three"], 2, "not a valid integer"),
    ("node-count-negative", ["create", "cluster", NAME, *GOOD_ZONES, "--node-count", "-1"], 1, "spec.minSize"),
    ("old-k8s", ["create", "cluster", NAME, *GOOD_ZONES, "--kubernetes-version", "1.20.0"], 1, "supported minor"),
    ("k8s-garbage", ["create", "cluster", NAME, *GOOD_ZONES, "--kubernetes-version", "latest"], 1, "not a Kubernetes version"),
    ("unknown-cni", ["create", "cluster", NAME, *GOOD_ZONES, "--networking", "weave"], 2, "--networking"),
    ("machine-type", ["create", "cluster", NAME, *GOOD_ZONES, "--node-size", "huge"], 1, "spec.machineType"),
    ("bad-ami", ["create", "cluster", NAME, *GOOD_ZONES, "--image", "ubuntu-latest"], 1, "spec.image"),
    ("ssh-access", ["create", "cluster", NAME, *GOOD_ZONES, "--ssh-access", "1.2.3.4/99"], 1, "spec.sshAccess"),
    ("admin-access", ["create", "cluster", NAME, *GOOD_ZONES, "--admin-access", "everywhere"], 1, "kubernetesApiAccess"),
    ("access-host-bits", ["create", "cluster", NAME, *GOOD_ZONES, "--ssh-access", "10.1.2.3/8"], 1,
     "has host bits set; did you mean 10.0.0.0/8 (or 10.1.2.3/32)?"),
    ("cp-zone-outside", ["create", "cluster", NAME, *GOOD_ZONES, "--control-plane-zones", "us-east-1c"], 1, "not in --zones"),
    ("unknown-flag", ["create", "cluster", NAME, *GOOD_ZONES, "--frobnicate"], 2, "No such option"),
    ("no-zones", ["create", "cluster", NAME], 2, "--zones"),
    ("no-name", ["create", "cluster", *GOOD_ZONES], 2, "cluster name is required"),
    ("unknown-verb", ["creat", "cluster"], 2, "No such command"),
    ("existing-cluster", ["create", "cluster", NAME, *GOOD_ZONES], 1, "already exists"),
    ("get-unknown", ["get", "cluster", "nope.example.com"], 1, "not found"),
    ("edit-unknown-ig", ["edit", "ig", "nope"], 1, "not found in cluster"),
    ("bad-output", ["get", "clusters", "-o", "xml"], 2, "--output"),
]

KEY_CASES = [
    ("key-missing", "missing", "does not exist"),
    ("key-private", "private", "private key"),
    ("key-garbage", "garbage", "not a valid OpenSSH public key"),
    ("key-directory", "directory", "is a folder, not a regular file"),
]

FILE_CASES = [
    ("yaml-malformed", lambda docs: "kind: Cluster\n  spec: [\n", "malformed YAML at line 2"),
    ("yaml-empty", lambda docs: "", "no documents"),
    ("unknown-field", mutate("0.spec.networkCidr", "10.0.0.0/16"), "spec.networkCidr: unknown field"),
    ("newer-api-version", mutate("0.apiVersion", "kopsy.io/v2"), "upgrade kopsy"),
    ("wrong-kind", mutate("0.kind", "Pod"), "kind must be Cluster or InstanceGroup"),
    ("subnet-overlap", mutate("0.spec.subnets.1.cidr", "172.20.32.0/19"), "overlaps subnet"),
    ("subnet-outside", mutate("0.spec.subnets.1.cidr", "10.9.0.0/19"), "not inside spec.networkCIDR"),
    ("pod-service-overlap", mutate("0.spec.podCIDR", "100.64.0.0/12"), "overlaps spec.serviceClusterIPRange"),
    ("min-gt-max", mutate("2.spec.minSize", 9), "smaller than spec.minSize 9"),
    ("unknown-subnet", mutate("2.spec.subnets", ["us-east-1z"]), "is not a subnet of the cluster"),
    ("size-as-string", mutate("2.spec.minSize", "two"), "spec.minSize: must be an integer"),
    ("bad-role", mutate("2.spec.role", "Master"), "spec.role"),
    ("bad-taint", mutate("2.spec.taints", ["no-effect"]), "is not key[=value]:Effect"),
    ("two-cp-groups-same-name", lambda docs: docs[:2] + [docs[1]] + docs[2:], "defined twice"),
    ("cluster-without-igs", lambda docs: docs[:1], "no InstanceGroup documents"),
    ("bad-networking", mutate("0.spec.networking", {"weave": {}}), "spec.networking"),
    ("volume-too-small", mutate("2.spec.rootVolumeSize", 2), "rootVolumeSize"),
]


@pytest.fixture
def populated(run_kopsy, aws_env, tmp_path, ssh_keypair):
    """A file:// store that already holds a cluster, so 'unchanged' means something."""
    env = dict(aws_env, KOPSY_STATE_STORE=f"file://{tmp_path / 'store'}")
    _, pub = ssh_keypair
    r = run_kopsy(["create", "cluster", NAME, *GOOD_ZONES, "--ssh-public-key", str(pub)], env)
    assert r.returncode == 0, r.stderr
    return env, pub


def assert_clean_failure(r, code: int, needle: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.stderr
    assert errors[0] == r.stderr.strip().splitlines()[-1]
    assert needle in errors[0], errors[0]


@pytest.mark.parametrize("case", FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_bad_flags(case, run_kopsy, populated, snapshot) -> None:
    _, argv, code, needle = case
    env, pub = populated
    if argv[:2] == ["create", "cluster"]:
        argv = [*argv, "--ssh-public-key", str(pub)]
    before = snapshot(env)
    assert_clean_failure(run_kopsy(argv, env), code, needle)
    assert snapshot(env) == before


@pytest.mark.parametrize("case", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_bad_ssh_keys(case, run_kopsy, populated, snapshot, tmp_path, ssh_keypair) -> None:
    _, kind, needle = case
    env, _ = populated
    priv, _ = ssh_keypair
    path = {"missing": tmp_path / "nope.pub", "private": priv, "directory": tmp_path,
            "garbage": tmp_path / "garbage.pub"}[kind]
    (tmp_path / "garbage.pub").write_text("ssh-ed25519 notbase64!! x\n")
    before = snapshot(env)
    r = run_kopsy(["create", "cluster", "other.example.com", *GOOD_ZONES, "--ssh-public-key", str(path)], env)
    assert_clean_failure(r, 1, needle)
    assert snapshot(env) == before


@pytest.mark.parametrize("case", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_spec_files(case, run_kopsy, populated, snapshot, tmp_path) -> None:
    _, change, needle = case
    env, pub = populated
    result = change(cluster_docs(run_kopsy, env, pub))
    text = result if isinstance(result, str) else yaml.safe_dump_all(result)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    before = snapshot(env)
    # Offline validation and a real create both refuse it.
    assert_clean_failure(run_kopsy(["create", "-f", str(path), "--dry-run"], env), 1, needle)
    assert_clean_failure(run_kopsy(["create", "-f", str(path), "--ssh-public-key", str(pub)], env), 1, needle)
    assert snapshot(env) == before


def test_missing_state_store_says_how_to_set_it(run_kopsy, aws_env) -> None:
    r = run_kopsy(["get", "clusters"], aws_env)
    assert_clean_failure(r, 2, "KOPSY_STATE_STORE")


def test_bad_state_url(run_kopsy, aws_env) -> None:
    r = run_kopsy(["--state", "ftp://bucket", "get", "clusters"], aws_env)
    assert_clean_failure(r, 1, "s3://")


def test_missing_bucket(run_kopsy, aws_env, ssh_keypair) -> None:
    _, pub = ssh_keypair
    env = dict(aws_env, KOPSY_STATE_STORE="s3://no-such-bucket")
    r = run_kopsy(["create", "cluster", NAME, *GOOD_ZONES, "--ssh-public-key", str(pub)], env)
    assert_clean_failure(r, 1, "does not exist")


def test_unreadable_object_in_store_is_one_line(run_kopsy, populated) -> None:
    env, _ = populated
    config = Path(env["KOPSY_STATE_STORE"][len("file://"):]) / NAME / "config"
    config.write_text(config.read_text()[:40])  # truncated
    r = run_kopsy(["get", "cluster", NAME], env)
    assert_clean_failure(r, 1, "config")


def test_debug_shows_the_traceback(run_kopsy, aws_env) -> None:
    r = run_kopsy(["--debug", "--state", "ftp://bucket", "get", "clusters"], aws_env)
    assert r.returncode == 1 and "Traceback" in r.stderr
