"""Bad input, generated: hundreds of malformed spec files and command-line flags.

Each must end with exit code 1 or 2, exactly one ``Error:`` line (not the catch-all
"unexpected ..." of an untranslated exception), no traceback, and a state store that is
byte-for-byte what it was. Every mutation is invalid *by construction* (a value of the wrong
type, an unknown field, a CIDR with host bits, ...), so a run that succeeds is a finding, not noise.

Most examples run in-process through ``kopsy.cli.main.main`` (the executable's own entry point,
so the same error handling) for speed; a sample goes through the real executable too.
"""

from __future__ import annotations

import copy
import io
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import KOPSY, caught_by_catch_all, one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the fault proxy

NAME = "fuzz.example.com"
EXISTING = "kept.example.com"
VALID_ZONES = ("us-east-1a", "us-east-1b")
MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass
class Env:
    root: Path
    state: str
    pub: Path
    docs: list[dict[str, Any]]
    spec_file: Path

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()}

    def unchanged_since(self, before: dict[str, bytes]) -> bool:
        """Whether the store is byte-for-byte ``before``; if not, put it back (so that one
        accepted input cannot make every later example fail for the wrong reason)."""
        after = self.snapshot()
        if after == before:
            return True
        for rel in after.keys() - before.keys():
            (self.root / rel).unlink()
        for rel, data in before.items():
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(data)
        return False


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A file:// store holding one cluster, a valid spec to break, and a clean process environment."""
    work = tmp_path_factory.mktemp("input")
    root = work / "store"
    root.mkdir()
    home = work / "home"
    home.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id")], check=True)
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith(("AWS_", "KOPSY_")):
            del os.environ[k]
    os.environ.update({"HOME": str(home), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "EDITOR": "false"})
    state = f"file://{root}"
    try:
        code, out, err = run_main(["--state", state, "create", "cluster", EXISTING, "--zones", ",".join(VALID_ZONES),
                                   "--ssh-public-key", str(work / "id.pub")])
        assert code == 0, err
        code, out, err = run_main(["create", "cluster", NAME, "--zones", ",".join(VALID_ZONES),
                                   "--ssh-public-key", str(work / "id.pub"), "--dry-run", "-o", "yaml"])
        assert code == 0, err
        docs = list(yaml.safe_load_all(out))
        assert [d["kind"] for d in docs] == ["Cluster", "InstanceGroup", "InstanceGroup"]
        yield Env(root, state, work / "id.pub", docs, work / "spec.yaml")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_main(args: list[str]) -> tuple[int, str, str]:
    """Run the ``kopsy`` entry point in this process; returns (exit code, stdout, stderr)."""
    from kopsy.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


OUTCOMES: list[tuple[str, int, str]] = []  # every refusal checked here (the last test checks none was the catch-all)


def check_refused(code: int, out: str, err: str) -> None:
    errors = one_error_line(err)
    OUTCOMES.append(("generated", code, errors[0] if errors else err[-200:]))
    assert code in (1, 2), f"exit {code}: {out[-300:]} {err[-300:]}"
    assert len(errors) == 1, err
    assert "Traceback" not in out + err
    assert not re.match(r"Error: unexpected \w+:", errors[0]), f"an untranslated exception: {errors[0]}"
    assert len(errors[0]) < 1200


# --- spec-file mutations (each invalid by construction) -------------------------------------

bad_cidr = st.one_of(
    st.text(min_size=1, max_size=20).filter(lambda s: not re.fullmatch(r"[\d./]+", s)),
    st.builds(lambda a, p: f"10.{a}.0.0/{p}", st.integers(0, 255), st.integers(33, 99)),
    st.builds(lambda a: f"172.20.{a}.1/19", st.integers(0, 255)),  # host bits set
    st.builds(lambda a: f"{a}.0.0.0/8", st.integers(256, 999)),
    st.just("fd00::/48"),
)
not_a_string = st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=3),
                         st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), min_size=1, max_size=2))
not_an_int = st.one_of(st.text(min_size=1, max_size=8).filter(lambda s: not re.fullmatch(r"\s*[-+]?\d+\s*", s)),
                       st.lists(st.integers(), min_size=1, max_size=3))
bad_name = st.one_of(
    st.text(alphabet="ABCXYZ_ !@#", min_size=1, max_size=20),
    st.builds(lambda n: "a" * n + ".com", st.integers(51, 80)),
    st.text(min_size=1, max_size=30).filter(lambda s: not DNS_NAME.match(s)),
)
# access lists: garbage, prefix > 32, octet > 255 (host bits are normalised by some tools: not used)
bad_access = st.one_of(
    st.text(alphabet="abcxyz:/!", min_size=1, max_size=12),
    st.builds(lambda a, p: f"10.{a}.0.0/{p}", st.integers(0, 255), st.integers(33, 99)),
    st.builds(lambda a: f"{a}.0.0.0/8", st.integers(256, 999)),
)
unknown_key = st.text(alphabet="abcdefgh", min_size=3, max_size=10).map(lambda s: "zz" + s)


def set_path(docs: list[dict[str, Any]], path: str, value: Any) -> list[dict[str, Any]]:
    docs = copy.deepcopy(docs)
    doc_index, *keys = path.split(".")
    node: Any = docs[int(doc_index)]
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return docs


def del_path(docs: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    docs = copy.deepcopy(docs)
    doc_index, *keys = path.split(".")
    node: Any = docs[int(doc_index)]
    for key in keys[:-1]:
        node = node[key]
    del node[keys[-1]]
    return docs


STRING_FIELDS = ["0.apiVersion", "0.kind", "0.metadata.name", "0.spec.kubernetesVersion", "0.spec.networkCIDR",
                 "0.spec.subnets.0.zone", "0.spec.subnets.0.cidr", "1.spec.role", "2.spec.machineType", "2.metadata.name"]
INT_FIELDS = ["1.spec.minSize", "2.spec.minSize", "2.spec.maxSize", "2.spec.rootVolumeSize"]


@st.composite
def broken_spec(draw: st.DrawFn) -> tuple[str, Any]:
    """(description, docs or raw text) of a spec that must be refused."""
    kind = draw(st.sampled_from([
        "wrong-type-str", "wrong-type-int", "unknown-field", "missing", "api-version", "kind", "name", "cidr",
        "zone", "k8s", "cp-size", "node-size", "machine-type", "subnet-ref", "role", "image", "access",
        "not-a-mapping", "yaml-syntax", "bad-bytes", "two-clusters",
    ]))
    if kind == "wrong-type-str":
        path = draw(st.sampled_from(STRING_FIELDS))
        return f"{path}=non-string", ("set", path, draw(not_a_string))
    if kind == "wrong-type-int":
        path = draw(st.sampled_from(INT_FIELDS))
        return f"{path}=non-int", ("set", path, draw(not_an_int))
    if kind == "unknown-field":
        where = draw(st.sampled_from(["0", "0.spec", "0.metadata", "1.spec", "2", "2.spec", "0.spec.subnets.0"]))
        key = draw(unknown_key)
        return f"{where}.{key}=unknown", ("set", f"{where}.{key}", draw(st.one_of(st.integers(), st.text(max_size=5))))
    if kind == "missing":
        path = draw(st.sampled_from(["0.apiVersion", "0.kind", "0.metadata.name", "1.kind", "2.apiVersion", "2.metadata.name"]))
        return f"{path} missing", ("del", path)
    if kind == "api-version":
        value = draw(st.one_of(st.sampled_from(["kopsy.io/v1alpha2", "kopsy.io/v1beta1", "kopsy.io/v2", "kops.k8s.io/v1alpha2"]),
                               st.text(max_size=20)).filter(lambda s: s != "kopsy.io/v1alpha1"))
        return f"apiVersion={value!r}", ("set", draw(st.sampled_from(["0.apiVersion", "1.apiVersion", "2.apiVersion"])), value)
    if kind == "kind":
        value = draw(st.text(max_size=15).filter(lambda s: s not in ("Cluster", "InstanceGroup")))
        return f"kind={value!r}", ("set", draw(st.sampled_from(["0.kind", "2.kind"])), value)
    if kind == "name":
        return "bad cluster name", ("set", "0.metadata.name", draw(bad_name))
    if kind == "cidr":
        path = draw(st.sampled_from(["0.spec.networkCIDR", "0.spec.subnets.0.cidr", "0.spec.subnets.1.cidr",
                                     "0.spec.podCIDR", "0.spec.serviceClusterIPRange", "0.spec.nonMasqueradeCIDR"]))
        return f"{path} bad CIDR", ("set", path, draw(bad_cidr))
    if kind == "zone":
        value = draw(st.one_of(st.sampled_from(["eu-west-1a", "us-west-2b", "us-east-1", "useast1a"]),
                               st.text(min_size=1, max_size=12).filter(lambda s: not re.fullmatch(r"us-east-1[a-f]", s))))
        return f"zone={value!r}", ("set", "0.spec.subnets.1.zone", value)
    if kind == "k8s":
        value = draw(st.one_of(st.sampled_from(["1.20.0", "1.99.0", "latest", "v1.36", "1.36"]),
                               st.text(min_size=1, max_size=10).filter(lambda s: not re.fullmatch(r"v?1\.3[5-7]\.\d+", s))))
        return f"kubernetesVersion={value!r}", ("set", "0.spec.kubernetesVersion", value)
    if kind == "cp-size":
        size = draw(st.integers(-5, 10).filter(lambda n: n != 1))
        return f"control-plane size {size}", ("set", draw(st.sampled_from(["1.spec.minSize", "1.spec.maxSize"])), size)
    if kind == "node-size":
        lo, hi = draw(st.one_of(
            st.tuples(st.integers(max_value=-1), st.integers(0, 5)),
            st.tuples(st.integers(3, 50), st.integers(0, 2)),
            st.tuples(st.integers(0, 2), st.integers(min_value=1001)),
        ))
        return f"nodes min {lo} max {hi}", ("sizes", lo, hi)
    if kind == "machine-type":
        value = draw(st.text(min_size=1, max_size=15).filter(lambda s: not MACHINE_TYPE.match(s)))
        return f"machineType={value!r}", ("set", "2.spec.machineType", value)
    if kind == "subnet-ref":
        value = draw(st.text(min_size=1, max_size=12).filter(lambda s: s not in VALID_ZONES))
        return f"subnets=[{value!r}]", ("set", "2.spec.subnets", [value])
    if kind == "role":
        value = draw(st.text(max_size=12).filter(lambda s: s not in ("ControlPlane", "Node")))
        return f"role={value!r}", ("set", "2.spec.role", value)
    if kind == "image":
        value = draw(st.text(min_size=1, max_size=20).filter(lambda s: not s.startswith("ami-")))
        return f"image={value!r}", ("set", "2.spec.image", value)
    if kind == "access":
        return "sshAccess bad CIDR", ("set", draw(st.sampled_from(["0.spec.sshAccess", "0.spec.kubernetesApiAccess"])), [draw(bad_access)])
    if kind == "not-a-mapping":
        doc = draw(st.one_of(st.integers(), st.text(alphabet="abc xyz", min_size=1, max_size=10).map(lambda s: "x" + s),
                             st.lists(st.integers(), min_size=1, max_size=3)))
        return f"document replaced by {doc!r}", ("set-doc", draw(st.integers(0, 2)), doc)
    if kind == "yaml-syntax":
        snippet = draw(st.sampled_from(["spec: [unclosed", "\tkey: tab-indented", "- : :\n  ]", "{a: b", "a: 'open"]))
        return f"YAML syntax {snippet!r}", ("append", snippet)
    if kind == "bad-bytes":
        blob = draw(st.sampled_from([b"\xff\xfe\x00", b"\x00\x01", b"\xc3\x28", b"\x80abc"]))
        return f"bytes {blob!r}", ("bytes", blob)
    return "two Cluster documents", ("two",)


def render(env: Env, op: tuple[Any, ...]) -> bytes:
    docs = env.docs
    what = op[0]
    if what == "set":
        docs = set_path(docs, op[1], op[2])
    elif what == "del":
        docs = del_path(docs, op[1])
    elif what == "sizes":
        docs = set_path(set_path(docs, "2.spec.minSize", op[1]), "2.spec.maxSize", op[2])
    elif what == "set-doc":
        docs = copy.deepcopy(docs)
        docs[op[1]] = op[2]
    elif what == "two":
        docs = [docs[0], set_path(docs, "0.metadata.name", "other.example.com")[0], *docs[1:]]
    text = yaml.safe_dump_all(docs, sort_keys=False).encode()
    if what == "append":
        text += b"\n" + op[1].encode() + b"\n"
    elif what == "bytes":
        text = text[: len(text) // 2] + op[1] + text[len(text) // 2:]
    return text


SETTINGS = settings(max_examples=160, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(case=broken_spec())
def test_malformed_spec_files_are_refused_in_one_line(env: Env, case: tuple[str, tuple[Any, ...]]) -> None:
    description, op = case
    env.spec_file.write_bytes(render(env, op))
    before = env.snapshot()
    code, out, err = run_main(["--state", env.state, "create", "-f", str(env.spec_file), "--ssh-public-key", str(env.pub)])
    unchanged = env.unchanged_since(before)
    check_refused(code, out, err)
    assert unchanged, f"{description}: the store changed"


# --- command-line flags ----------------------------------------------------------------------

GOOD = ["--zones", ",".join(VALID_ZONES)]


@st.composite
def broken_flags(draw: st.DrawFn) -> list[str]:
    flag = draw(st.sampled_from([
        "name", "zones", "cidr", "cp-count", "node-count", "k8s", "networking", "image", "ssh-access",
        "admin-access", "node-size", "unknown", "update-parallelism", "delete-wait", "get-output", "cp-zones",
    ]))
    create = ["create", "cluster"]
    if flag == "name":
        return [*create, draw(bad_name.filter(lambda s: not s.startswith("-"))), *GOOD]
    if flag == "zones":
        z = draw(st.one_of(st.sampled_from(["us-east-1a,eu-west-1a", "useast1", ",", "us-east-1", "us-east-1a,,us-west-2a"]),
                           st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith("-") and not re.fullmatch(r"[\s,]*(us-east-1[a-f][\s,]*)+", s))))
        return [*create, NAME, "--zones", z]
    if flag == "cidr":
        return [*create, NAME, *GOOD, "--network-cidr", draw(bad_cidr.filter(lambda s: not s.startswith("-")))]
    if flag == "cp-count":
        return [*create, NAME, *GOOD, "--control-plane-count",
                str(draw(st.one_of(st.integers(-3, 9).filter(lambda n: n not in (1, 3, 5)).map(str),
                                   not_an_int.filter(lambda v: isinstance(v, str) and not v.startswith("-")))))]
    if flag == "node-count":
        return [*create, NAME, *GOOD, "--node-count", str(draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=1001))))]
    if flag == "k8s":
        return [*create, NAME, *GOOD, "--kubernetes-version",
                draw(st.text(min_size=1, max_size=10).filter(lambda s: not s.startswith("-") and not re.fullmatch(r"v?1\.3[5-7]\.\d+", s)))]
    if flag == "networking":
        return [*create, NAME, *GOOD, "--networking", draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in ("calico", "cilium", "flannel") and not s.startswith("-")))]
    if flag == "image":
        return [*create, NAME, *GOOD, "--image", draw(st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith(("ami-", "-"))))]
    if flag in ("ssh-access", "admin-access"):
        return [*create, NAME, *GOOD, f"--{flag}", draw(bad_access.filter(lambda s: "," not in s))]
    if flag == "node-size":
        return [*create, NAME, *GOOD, "--node-size", draw(st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith("-") and not MACHINE_TYPE.match(s)))]
    if flag == "cp-zones":
        return [*create, NAME, *GOOD, "--control-plane-zones", draw(st.sampled_from(["eu-west-1a", "us-east-1f", "nowhere"]))]
    if flag == "unknown":
        return [*create, NAME, *GOOD, "--" + draw(unknown_key)]
    if flag == "update-parallelism":
        return ["update", "cluster", EXISTING, "--parallelism", draw(st.one_of(st.integers(max_value=0).map(str), st.integers(min_value=65).map(str), st.just("many")))]
    if flag == "delete-wait":
        return ["delete", "cluster", EXISTING, "--wait", draw(st.text(alphabet="abcxyz-!", min_size=1, max_size=6).filter(lambda s: not s.startswith("-")))]
    return ["get", "clusters", "-o", draw(st.text(alphabet="xmlcsvhtm", min_size=1, max_size=5).filter(lambda s: s not in ("yaml", "json", "table")))]


@SETTINGS
@given(argv=broken_flags())
def test_malformed_flags_are_refused_in_one_line(env: Env, argv: list[str]) -> None:
    before = env.snapshot()
    code, out, err = run_main(["--state", env.state, *argv, *(["--ssh-public-key", str(env.pub)] if argv[0] == "create" else [])])
    unchanged = env.unchanged_since(before)
    check_refused(code, out, err)
    assert unchanged, f"{argv}: the store changed"


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=broken_spec(), argv=broken_flags())
def test_a_sample_through_the_real_executable(env: Env, case: tuple[str, tuple[Any, ...]], argv: list[str]) -> None:
    """The in-process shortcut must not hide anything the executable does differently."""
    env.spec_file.write_bytes(render(env, case[1]))
    before = env.snapshot()
    process_env = {**os.environ}
    for args in (["create", "-f", str(env.spec_file), "--ssh-public-key", str(env.pub)],
                 [*argv, *(["--ssh-public-key", str(env.pub)] if argv[0] == "create" else [])]):
        r = subprocess.run([KOPSY, "--state", env.state, *args], env=process_env, capture_output=True, text=True, timeout=60)
        unchanged = env.unchanged_since(before)
        check_refused(r.returncode, r.stdout, r.stderr)
        assert unchanged, f"{args}: the store changed"


def test_no_generated_case_hit_the_catch_all() -> None:
    """Runs after the cases (pytest keeps file order, in one process); each case also checks its own."""
    assert not caught_by_catch_all(OUTCOMES), caught_by_catch_all(OUTCOMES)[:10]
