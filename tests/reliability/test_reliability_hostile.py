"""Hostile and broken input through the real executable (issue 19): more than 300 distinct cases
across flags, spec files, ``$EDITOR`` behaviour, damaged file:// stores, the environment and
endpoint answers.

Every case must exit non-zero with exactly one specific ``Error:`` line (never the catch-all
``Error: unexpected ...``, never a traceback), within its time bound, leaving the state store
byte for byte as it was. Nothing can be built: AWS_ENDPOINT_URL points at a closed loopback
port, or at a stub that answers every request with the same broken body. Each case's outcome is
recorded, and ``test_no_case_hit_the_catch_all`` fails if any of them (in this module or in
``test_reliability_input.py``, which shares ``check_refused``'s rule) produced the catch-all.

Signals and a sick endpoint have their own tests (``test_reliability_signals.py``); a damaged S3
store is in ``test_reliability_state.py``.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from reliability_support import KOPSY, caught_by_catch_all, one_error_line

NAME = "hostile.example.com"
KEPT = "kept.example.com"
ZONES = "us-east-1a,us-east-1b"
CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens, nothing can be built
BOUND = 20.0  # seconds; every refusal here is local and should take well under one
OUTCOMES: list[tuple[str, int, str]] = []  # (case id, exit code, Error line) of every case run

SPEC = """apiVersion: kopsy.io/v1alpha1
kind: Cluster
metadata:
  name: {name}
spec:
  kubernetesVersion: {version}
  networkCIDR: {network}
  subnets:
  - name: us-east-1a
    zone: us-east-1a
    cidr: {subnet_a}
    type: Public
  - name: us-east-1b
    zone: {zone_b}
    cidr: 172.20.64.0/19
    type: Public
  sshAccess:
  - {ssh}
  kubernetesApiAccess:
  - 0.0.0.0/0
  networking:
    calico: {{}}
---
apiVersion: kopsy.io/v1alpha1
kind: InstanceGroup
metadata:
  name: control-plane-us-east-1a
  labels:
    kopsy.io/cluster: {name}
spec:
  role: ControlPlane
  machineType: t3.medium
  minSize: {cp_size}
  maxSize: {cp_size}
  subnets:
  - us-east-1a
---
apiVersion: kopsy.io/v1alpha1
kind: InstanceGroup
metadata:
  name: nodes
  labels:
    kopsy.io/cluster: {name}
spec:
  role: Node
  machineType: {machine}
  minSize: {min_size}
  maxSize: {max_size}
  subnets:
  - us-east-1a
  - us-east-1b
"""
GOOD = dict(name=NAME, version="1.36.0", network="172.20.0.0/16", subnet_a="172.20.32.0/19", zone_b="us-east-1b",
            ssh="10.0.0.0/8", cp_size="1", machine="t3.medium", min_size="2", max_size="2")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable, case after case


def spec(**changes: str) -> str:
    return SPEC.format(**{**GOOD, **changes})


@dataclass
class World:
    """Shared, read-only material: a pristine store holding one cluster, keys, a stub endpoint."""

    work: Path
    home: Path
    pristine: Path
    pub: Path
    keys: dict[str, Path]
    stub: str


@dataclass
class Case:
    id: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[World, Path], None] | None = None  # damage the case's own store copy / write files
    expect: str = ""  # a piece of the Error line, lowercase match
    timeout: float = BOUND


# --- the world -------------------------------------------------------------------------------


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with one fixed (status, content type, body), chosen by the port the
    server listens on: one stub server per kind of broken answer."""

    modes: dict[int, tuple[int, str, bytes]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, ctype, body = self.modes.get(self.server.server_address[1], (500, "text/html", b""))  # type: ignore[index]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer


ANSWERS = {
    "html-200": (200, "text/html", b"<html><body><h1>Welcome to our portal</h1></body></html>"),
    "xhtml-200": (200, "text/html", b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body>hi</body></html>'),
    "empty-200": (200, "text/plain", b""),
    "json-200": (200, "application/json", b'{"hello": "world"}'),
    "empty-500": (500, "text/plain", b""),
    "html-500": (500, "text/html", b"<html><body>Internal Server Error</body></html>"),
    "html-403": (403, "text/html", b"<html><body>Forbidden</body></html>"),
    "html-404": (404, "text/html", b"<html><body>Not Found</body></html>"),
}


@pytest.fixture(scope="module")
def stubs() -> Iterator[dict[str, str]]:
    servers = {}
    for kind, answer in ANSWERS.items():
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
        srv.daemon_threads = True
        _Stub.modes[srv.server_address[1]] = answer
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[kind] = srv
    yield {k: f"http://127.0.0.1:{s.server_address[1]}" for k, s in servers.items()}
    for s in servers.values():
        s.shutdown()
        s.server_close()


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_", "EDITOR", "VISUAL", "KUBECONFIG"))}
    env.update({
        "HOME": str(home), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": CLOSED,
        "AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "KOPSY_AWS_RETRY_BUDGET": "3", "KOPSY_AWS_READ_TIMEOUT": "2", "KOPSY_AWS_CONNECT_TIMEOUT": "2",
        "EDITOR": "false", "NO_PROXY": "127.0.0.1,localhost",
    })
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, stubs: dict[str, str]) -> World:
    work = tmp_path_factory.mktemp("hostile")
    home = work / "home"
    home.mkdir()
    (home / "aws-config").write_text("[default]\nregion = us-east-1\n")
    keys: dict[str, Path] = {}
    for kind, extra in (("ed25519", []), ("rsa1024", ["-t", "rsa", "-b", "1024"]), ("ecdsa", ["-t", "ecdsa"]),
                        ("dsa", ["-t", "dsa"]), ("rsa2048", ["-t", "rsa", "-b", "2048"])):
        path = work / f"id_{kind}"
        args = extra or ["-t", "ed25519"]
        r = subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-f", str(path)], capture_output=True)
        if r.returncode == 0:
            keys[kind] = path
    pristine = work / "pristine"
    r = subprocess.run([KOPSY, "--state", f"file://{pristine}", "create", "cluster", KEPT, "--zones", ZONES,
                        "--ssh-public-key", f"{keys['ed25519']}.pub"], env=base_env(home), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return World(work, home, pristine, Path(f"{keys['ed25519']}.pub"), keys, stubs["html-200"])


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry of a file store (its mode and bytes), but for the file store's own flock file
    (``.kopsy-store.lock``, created empty the first time an object is replaced or deleted
    conditionally, e.g. when ``update --yes`` releases its lock)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == ".kopsy-store.lock":
            continue
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes())
        else:
            out[str(p.relative_to(root))] = (st.st_mode, b"")
    return out


# --- the cases -------------------------------------------------------------------------------


def _write(rel: str, data: bytes | str) -> Callable[[World, Path], None]:
    def prepare(w: World, case: Path) -> None:
        p = case / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return prepare


def _create_f(cid: str, text: str | bytes, expect: str = "") -> Case:
    return Case(f"spec-{cid}", ["create", "-f", "{case}/spec.yaml", "--ssh-public-key", "{pub}"],
                prepare=_write("spec.yaml", text), expect=expect)


def spec_cases() -> list[Case]:
    c: list[Case] = []
    for v in ["01.36.0", "' 1.36.0'", "'1.36.0 '", "1.36.0000", "1.36.99999", "1.36.1.2", "1.036.0", "v1.36", "1.36",
              "latest", "1.20.0", "2.0.0", "v01.36.0", "1.37.-1", "1,36,0", "'1.36.0\\n'", "\"\"", "1.99.0"]:
        c.append(_create_f(f"version-{v.replace(' ', '_') or 'blank'}", spec(version=v), "kubernetesversion"))
    for n in ["127.0.0.0/16", "169.254.0.0/16", "224.0.0.0/16", "240.0.0.0/16", "0.0.0.0/16", "198.18.0.0/16",
              "172.20.0.1/16", "10.0.0.0/8", "10.0.0.0/29", "fd00::/48", "not-a-cidr", "300.0.0.0/16", "172.20.0.0/33", "''"]:
        c.append(_create_f(f"network-{n}", spec(network=n), "networkcidr"))
    for n in ["127.0.32.0/19", "169.254.32.0/19", "224.0.32.0/19", "172.20.32.1/19", "10.0.0.0/19", "abc"]:
        c.append(_create_f(f"subnet-{n}", spec(network=("127.0.0.0/16" if n.startswith("127") else
                                                         "169.254.0.0/16" if n.startswith("169") else
                                                         "224.0.0.0/16" if n.startswith("224") else "172.20.0.0/16"),
                                                subnet_a=n), "cidr"))
    for a in ["''", "'::/0'", "fd00::/8", "'2001:db8::/32'", "10.0.0.1/8", "1.2.3.4/33", "garbage", "256.1.1.1/32", "10.0.0.0/-1"]:
        c.append(_create_f(f"ssh-access-{a}", spec(ssh=a), "sshaccess"))
    for z in ["eu-west-1a", "us-east-1", "useast1a", "US-EAST-1A", "''"]:
        c.append(_create_f(f"zone-{z}", spec(zone_b=z)))
    for m in ["big", "T3.MEDIUM", "t3", "''", "t3.medium; rm -rf /", "[1, 2]"]:
        c.append(_create_f(f"machine-{m}", spec(machine=m)))
    for lo, hi in [("-1", "2"), ("3", "2"), ("0", "1001"), ("'two'", "2"), ("2.5", "3"), ("1" + "0" * 40, "2"),
                   ("null", "2"), ("[1]", "2"), ("{a: 1}", "2"), ("0x10", "1" + "0" * 400)]:
        c.append(_create_f(f"sizes-{lo[:12]}-{hi[:12]}", spec(min_size=lo, max_size=hi)))
    for size in ["0", "2", "3", "-1", "1000000000"]:
        c.append(_create_f(f"cp-size-{size}", spec(cp_size=size)))
    for n in ["Demo.example.com", "a" * 60 + ".com", "-bad.example.com", "bad_name.example.com", "''", "'a b'"]:
        c.append(_create_f(f"name-{n[:20]}", spec(name=n)))
    good = spec()
    # YAML structure
    c += [
        _create_f("alias", good + "---\nx: &a [1, 2]\ny: *a\n", "alias"),
        _create_f("anchor-only", good.replace("networking:\n    calico: {}", "networking: &n\n    calico: {}"), "anchor"),
        _create_f("alias-bomb", "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)), "alias"),
        _create_f("merge-key", good.replace("  networking:\n", "  <<: {x: 1}\n  networking:\n"), ""),
        _create_f("deep-flow", "[" * 5000 + "]" * 5000, "nested"),
        _create_f("deep-flow-map", "{a: " * 3000 + "1" + "}" * 3000, "nested"),
        _create_f("deep-block", "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v: 1\n", "nested"),
        _create_f("dup-minsize", good.replace("  minSize: 2\n", "  minSize: 2\n  minSize: 0\n"), "duplicate key"),
        _create_f("dup-kind", good.replace("kind: Cluster\n", "kind: Cluster\nkind: Cluster\n"), "duplicate key"),
        _create_f("dup-name", good.replace(f"  name: {NAME}\nspec", f"  name: {NAME}\n  name: other.example.com\nspec"), "duplicate key"),
        _create_f("dup-spec", good.replace("spec:\n  kubernetesVersion", "spec: {}\nspec:\n  kubernetesVersion"), "duplicate key"),
        _create_f("dup-network", good.replace("  networkCIDR: 172.20.0.0/16\n", "  networkCIDR: 172.20.0.0/16\n  networkCIDR: 10.0.0.0/16\n"), "duplicate key"),
        _create_f("huge-int", good.replace("  minSize: 2\n", "  minSize: " + "9" * 5000 + "\n"), ""),
        _create_f("many-values", "[" + ",".join(["1"] * 30000) + "]", "values"),
        _create_f("too-large", good + "#" + "x" * (300 * 1024) + "\n", "limit"),
        _create_f("empty", "", "no documents"),
        _create_f("only-comments", "# nothing\n# here\n", "no documents"),
        _create_f("only-separators", "---\n---\n---\n", "no documents"),
        _create_f("scalar", "just a string\n"),
        _create_f("list", "- 1\n- 2\n"),
        _create_f("python-tag", good + "---\n!!python/object/apply:os.system ['true']\n"),
        _create_f("binary", b"\x00\x01\x02\xff\xfe" * 50),
        _create_f("utf16", good.encode("utf-16")),
        _create_f("latin1", good.replace("calico", "cal\xefco").encode("latin-1")),
        _create_f("nul-inside", good.replace("t3.medium", "t3.med\x00ium")),
        _create_f("tabs", good.replace("  ", "\t")),
        _create_f("unclosed", good + "\nspec: [unclosed\n"),
        _create_f("annotation-map", good.replace(f"  name: {NAME}\nspec", f"  name: {NAME}\n  annotations:\n    a: {{b: c}}\nspec"), "annotations"),
        _create_f("annotation-list", good.replace(f"  name: {NAME}\nspec", f"  name: {NAME}\n  annotations:\n    a: [1]\nspec"), "annotations"),
        _create_f("two-clusters", good + "---\n" + spec(name="other.example.com").split("---")[0]),
        _create_f("no-groups", spec().split("---")[0], "no instancegroup"),
        _create_f("unknown-top", good.replace("kind: Cluster\n", "kind: Cluster\nzzextra: 1\n"), "zzextra"),
        _create_f("unknown-spec", good.replace("  networking:\n", "  zzfield: 1\n  networking:\n"), "zzfield"),
        _create_f("api-v2", good.replace("kopsy.io/v1alpha1", "kopsy.io/v2", 1)),
        _create_f("kind-pod", good.replace("kind: Cluster", "kind: Pod", 1)),
    ]
    # the same documents through replace -f (the cluster exists; nothing may change)
    for v in ["01.36.0", "1.36.99999", "latest"]:
        c.append(Case(f"replace-version-{v}", ["replace", "-f", "{case}/spec.yaml"],
                      prepare=_write("spec.yaml", spec(name=KEPT, version=v)), expect="kubernetesversion"))
    for n in ["127.0.0.0/16", "224.0.0.0/16", "172.20.0.1/16"]:
        c.append(Case(f"replace-network-{n}", ["replace", "-f", "{case}/spec.yaml"],
                      prepare=_write("spec.yaml", spec(name=KEPT, network=n)), expect="networkcidr"))
    c += [
        Case("replace-alias", ["replace", "-f", "{case}/spec.yaml"], prepare=_write("spec.yaml", spec(name=KEPT) + "---\na: &x 1\nb: *x\n"), expect="alias"),
        Case("replace-dup", ["replace", "-f", "{case}/spec.yaml"],
             prepare=_write("spec.yaml", spec(name=KEPT).replace("  minSize: 2\n", "  minSize: 2\n  minSize: 0\n")), expect="duplicate key"),
        Case("replace-deep", ["replace", "-f", "{case}/spec.yaml"], prepare=_write("spec.yaml", "[" * 3000 + "]" * 3000), expect="nested"),
        Case("replace-config-base", ["replace", "-f", "{case}/spec.yaml"],
             prepare=_write("spec.yaml", spec(name=KEPT).replace("  networking:\n", "  configBase: s3://elsewhere/kept.example.com\n  networking:\n")),
             expect="configbase"),
        Case("replace-no-file", ["replace"], expect="-f"),
    ]
    return c


def _fifo(rel: str) -> Callable[[World, Path], None]:
    def prepare(w: World, case: Path) -> None:
        p = case / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() or p.is_symlink():
            p.unlink()
        os.mkfifo(p)

    return prepare


def _create(*extra: str, key: str = "{pub}") -> list[str]:
    return ["create", "cluster", NAME, "--zones", ZONES, "--ssh-public-key", key, *extra]


def flag_cases() -> list[Case]:
    c: list[Case] = []
    for z in ["us-east-1a,us-east-1a", "us-east-1a,us-east-1b,us-east-1a", "us-east-1a,us-west-2a", "useast1", ",",
              "us-east-1", "eu-west-1a,,us-west-2a", "US-EAST-1A", "us-east-1a;rm"]:
        c.append(Case(f"zones-{z}", ["create", "cluster", NAME, "--zones", z, "--ssh-public-key", "{pub}"]))
    for n in ["0", "2", "4", "6", "-1", "1000000000", str(10**30), "1e9", "three", "1.5"]:
        c.append(Case(f"cp-count-{n[:12]}", _create("--control-plane-count", n)))
    for n in ["1001", "1000000000000", "-5", "many", str(10**40)]:
        c.append(Case(f"node-count-{n[:12]}-{len(n)}", _create("--node-count", n)))
    for v in ["01.36.0", " 1.36.0", "1.36.0 ", "1.36.99999", "v1.36", "1.36", "1.36.0.1", "1.036.0", "latest", "1.20.0",
              "v", "1.36.0-rc.1", "1..0", "\u0661.36.0"]:
        c.append(Case(f"k8s-{v.replace(' ', '_') or 'blank'}", _create("--kubernetes-version", v), expect="kubernetesversion"))
    for n in ["127.0.0.0/16", "169.254.0.0/16", "224.0.0.0/16", "240.0.0.0/16", "0.0.0.0/16", "172.20.0.1/16",
              "fd00::/48", "garbage", "10.0.0.0/8", "10.0.0.0/29", ""]:
        c.append(Case(f"network-cidr-{n or 'empty'}", _create("--network-cidr", n), expect="network"))
    for flag, field_name in (("--ssh-access", "sshaccess"), ("--admin-access", "")):
        for a in ["", " ", ",", "::/0", "fd00::/8", "2001:db8::/32", "10.0.0.1/8", "1.2.3.4/40", "abc", "10.0.0.0/8,::/0"]:
            c.append(Case(f"{flag[2:]}-{a or 'empty'}", _create(f"{flag}={a}")))
    for n in ["Demo", "a" * 60, "bad_name", "-x", "a..b", "x.", "\u00e9t\u00e9.example.com", "a b"]:
        c.append(Case(f"name-{n[:16]}", ["create", "cluster", n, "--zones", ZONES, "--ssh-public-key", "{pub}"]))
    c += [
        Case("networking-weave", _create("--networking", "weave")),
        Case("image-ubuntu", _create("--image", "ubuntu")),
        Case("node-size-big", _create("--node-size", "big")),
        Case("cp-size-big", _create("--control-plane-size", "BIG")),
        Case("cp-zones-foreign", _create("--control-plane-zones", "eu-west-1a")),
        Case("cp-zones-dup", _create("--control-plane-count", "3", "--control-plane-zones", "us-east-1a,us-east-1a")),
        Case("unknown-flag", _create("--zzz")),
        Case("no-name", ["create", "cluster", "--zones", ZONES, "--ssh-public-key", "{pub}"]),
        Case("no-zones", ["create", "cluster", NAME, "--ssh-public-key", "{pub}"]),
        Case("exists", ["create", "cluster", KEPT, "--zones", ZONES, "--ssh-public-key", "{pub}"], expect="already exists"),
    ]
    # SSH public keys
    c += [
        Case("key-rsa1024", _create(key="{key:rsa1024}.pub"), expect="too weak"),
        Case("key-ecdsa", _create(key="{key:ecdsa}.pub"), expect="not accepted"),
        Case("key-dsa", _create(key="{key:dsa}.pub"), expect="not accepted"),
        Case("key-private", _create(key="{key:ed25519}"), expect="private key"),
        Case("key-sk", _create(key="{case}/sk.pub"), prepare=_write("sk.pub", "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t x\n"), expect="not accepted"),
        Case("key-options", _create(key="{case}/opt.pub"), prepare=lambda w, d: (d / "opt.pub").write_text('from="10.0.0.1",no-pty ' + w.pub.read_text()), expect="options"),
        Case("key-garbage", _create(key="{case}/g.pub"), prepare=_write("g.pub", "ssh-ed25519 AAAAnotbase64!!\n"), expect="not a valid"),
        Case("key-garbage-rsa", _create(key="{case}/g.pub"), prepare=_write("g.pub", "ssh-rsa " + "A" * 64 + "\n"), expect="not a valid"),
        Case("key-words", _create(key="{case}/g.pub"), prepare=_write("g.pub", "hello world\n"), expect="not an openssh"),
        Case("key-empty", _create(key="{case}/g.pub"), prepare=_write("g.pub", "")),
        Case("key-two-lines", _create(key="{case}/g.pub"), prepare=lambda w, d: (d / "g.pub").write_text(w.pub.read_text() * 2)),
        Case("key-binary", _create(key="{case}/g.pub"), prepare=_write("g.pub", b"\xff\xfe\x00\x01" * 10), expect="not text"),
        Case("key-control-chars", _create(key="{case}/g.pub"), prepare=_write("g.pub", "ssh-ed25519 AAAA\x1b[31m x\n")),
        Case("key-huge", _create(key="{case}/g.pub"), prepare=_write("g.pub", "ssh-ed25519 " + "A" * (5 * 1024 * 1024)), expect="limit"),
        Case("key-fifo", _create(key="{case}/fifo.pub"), prepare=_fifo("fifo.pub"), expect="fifo"),
        Case("key-dev-zero", _create(key="/dev/zero"), expect="device"),
        Case("key-dev-null", _create(key="/dev/null"), expect="device"),
        Case("key-directory", _create(key="{case}"), expect="folder"),
        Case("key-missing", _create(key="{case}/nope.pub"), expect="does not exist"),
        Case("key-nul-path", _create(key="{case}/a\x01b.pub")),
        Case("key-mismatched-type", _create(key="{case}/g.pub"), prepare=lambda w, d: (d / "g.pub").write_text("ssh-rsa " + w.pub.read_text().split()[1] + "\n")),
    ]
    # spec files that are not files
    c += [
        Case("f-fifo", ["create", "-f", "{case}/spec.yaml", "--ssh-public-key", "{pub}"], prepare=_fifo("spec.yaml"), expect="fifo"),
        Case("f-dev-zero", ["create", "-f", "/dev/zero", "--ssh-public-key", "{pub}"], expect="device"),
        Case("f-directory", ["create", "-f", "{case}", "--ssh-public-key", "{pub}"], expect="folder"),
        Case("f-missing", ["create", "-f", "{case}/nope.yaml", "--ssh-public-key", "{pub}"], expect="does not exist"),
        Case("replace-f-fifo", ["replace", "-f", "{case}/spec.yaml"], prepare=_fifo("spec.yaml"), expect="fifo"),
        Case("replace-f-dev-zero", ["replace", "-f", "/dev/zero"], expect="device"),
    ]
    # other commands' flags
    for p in ["0", "65", "-1", "many", "1" * 50]:
        c.append(Case(f"update-parallelism-{p[:10]}", ["update", "cluster", KEPT, "--parallelism", p]))
    for w in ["abc", "10x", "-5m", "1" * 300, "99999999h", "1e400", "1h30", "nan"]:
        c.append(Case(f"delete-wait-{w[:10]}-{len(w)}", ["delete", "cluster", KEPT, "--wait", w]))
    for t in ["0", "-1h", "1" * 300, "99999999h", "abc", "inf"]:
        c.append(Case(f"export-ttl-{t[:10]}-{len(t)}", ["export", "kubecfg", KEPT, "--admin", "--ttl", t]))
    c += [
        Case("export-no-admin", ["export", "kubecfg", KEPT], expect="--admin"),
        Case("export-kubeconfig-fifo", ["export", "kubecfg", KEPT, "--admin", "--kubeconfig", "{case}/kc"], prepare=_fifo("kc"), expect="fifo"),
        Case("export-kubeconfig-dir", ["export", "kubecfg", KEPT, "--admin", "--kubeconfig", "{case}"], expect="folder"),
        Case("export-kubeconfig-dev-null", ["export", "kubecfg", KEPT, "--admin", "--kubeconfig", "/dev/null"], expect="device"),
        Case("export-kubeconfig-binary", ["export", "kubecfg", KEPT, "--admin", "--kubeconfig", "{case}/kc"], prepare=_write("kc", b"\xff\xfe\x00" * 30), expect="utf-8"),
        Case("export-kubeconfig-bomb", ["export", "kubecfg", KEPT, "--admin", "--kubeconfig", "{case}/kc"],
             prepare=_write("kc", "a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(
                 f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8))),
             expect="not valid yaml"),  # kubeconfigs may use anchors (kubectl reads them); 10^9 values may not
        Case("export-kubeconfig-not-yaml", ["export", "kubecfg", KEPT, "--admin", "--kubeconfig", "{case}/kc"], prepare=_write("kc", "a: [\n"), expect="not valid yaml"),
        Case("export-kubeconfig-env-dev-null", ["export", "kubecfg", KEPT, "--admin"], env={"KUBECONFIG": "/dev/null"}, expect="device"),
        Case("export-unknown-cluster", ["export", "kubecfg", "nope.example.com", "--admin"], expect="not found"),
        Case("validate-ssh-key-binary", ["validate", "cluster", KEPT, "--ssh-key", "{case}/k"], prepare=_write("k", b"\x00\xff" * 40), expect="--ssh-key"),
        Case("validate-ssh-key-fifo", ["validate", "cluster", KEPT, "--ssh-key", "{case}/k"], prepare=_fifo("k"), expect="fifo"),
        Case("validate-ssh-key-public", ["validate", "cluster", KEPT, "--ssh-key", "{pub}"], expect="private key"),
        Case("validate-ssh-key-dev-zero", ["validate", "cluster", KEPT, "--ssh-key", "/dev/zero"]),
        Case("validate-bastion-long", ["validate", "cluster", KEPT, "--bastion", "a" * 5000], expect="--bastion"),
        Case("validate-bastion-label", ["validate", "cluster", KEPT, "--bastion", "a" * 70 + ".example.com"]),
        Case("validate-bastion-control", ["validate", "cluster", KEPT, "--bastion", "host\nError: fake"], expect="--bastion"),
        Case("validate-wait-digits", ["validate", "cluster", KEPT, "--wait", "9" * 400]),
        Case("validate-interval-zero", ["validate", "cluster", KEPT, "--wait", "1m", "--interval", "0"]),
        Case("get-output-xml", ["get", "clusters", "-o", "xml"]),
        Case("get-unknown-cluster", ["get", "cluster", "nope.example.com"], expect="not found"),
        Case("get-unknown-ig", ["get", "ig", "zz", "--name", KEPT], expect="not found"),
        Case("delete-ig-unknown-no-yes", ["delete", "ig", "zz", "--name", KEPT], expect="not found"),
        Case("delete-ig-last-control-plane", ["delete", "ig", "control-plane-us-east-1a", "--name", KEPT, "--yes"], expect="control-plane"),
        Case("delete-ig-two-names", ["delete", "ig", "a", "b", "--name", KEPT, "--yes"], expect="one instance group"),
        Case("delete-ig-region", ["delete", "ig", "nodes", "--name", KEPT, "--region", "us-east-1"], expect="--region"),
        Case("delete-ig-bad-name", ["delete", "ig", "../x", "--name", KEPT, "--yes"]),
        Case("edit-unknown-ig", ["edit", "ig", "zz", "--name", KEPT], expect="not found"),
        Case("update-two-names", ["update", "cluster", "a", "b"]),
        Case("unknown-command", ["frobnicate"]),
    ]
    return c


def _editor(w: World, case: Path, script: str) -> str:
    """An $EDITOR: a shell script applied to the file it is given."""
    path = case / "editor.sh"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def editor_cases() -> list[Case]:
    scripts = {
        "deletes-file": 'rm -f "$1"',
        "folder": 'rm -f "$1"; mkdir "$1"',
        "fifo": 'rm -f "$1"; mkfifo "$1"',
        "symlink-dev-zero": 'rm -f "$1"; ln -s /dev/zero "$1"',
        "invalid-utf8": "printf '\\377\\376\\000kind: x\\n' > \"$1\"",
        "binary": 'head -c 2000 /dev/urandom > "$1"',
        "empty": ': > "$1"',
        "only-comments": 'echo "# nothing" > "$1"',
        "exit-1": "exit 1",
        "alias-bomb": "printf 'a: &a [x,x,x,x,x,x,x,x,x]\\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\\n' > \"$1\"",
        "deep": "python3 -c 'import sys; open(sys.argv[1], \"w\").write(\"[\" * 5000 + \"]\" * 5000)' \"$1\"",
        "huge": "head -c 600000 /dev/zero | tr '\\0' 'a' > \"$1\"",
        "duplicate-key": "sed -i 's/^  minSize: 2$/  minSize: 2\\n  minSize: 0/' \"$1\"",
        "two-documents": "printf -- '---\\na: 1\\n---\\nb: 2\\n' > \"$1\"",
        "rename": "sed -i 's/^  name: nodes$/  name: other/' \"$1\"",
    }
    c = [Case(f"edit-ig-{k}", ["edit", "ig", "nodes", "--name", KEPT], env={"EDITOR": "{editor}"},
              prepare=(lambda s: lambda w, d: d.joinpath("editor-script").write_text(s))(v)) for k, v in scripts.items()]
    cluster_scripts = {
        "config-base-elsewhere": "sed -i 's|^  configBase: .*$|  configBase: s3://elsewhere/kept.example.com|' \"$1\"",
        "rename": "sed -i 's/^  name: kept.example.com$/  name: other.example.com/' \"$1\"",
        "version-leading-zero": "sed -i 's/^  kubernetesVersion: .*$/  kubernetesVersion: 01.36.0/' \"$1\"",
        "network-loopback": "sed -i 's|^  networkCIDR: .*$|  networkCIDR: 127.0.0.0/16|' \"$1\"",
        "deletes-file": 'rm -f "$1"',
        "invalid-utf8": "printf '\\377\\376' > \"$1\"",
    }
    c += [Case(f"edit-cluster-{k}", ["edit", "cluster", KEPT], env={"EDITOR": "{editor}"},
               prepare=(lambda s: lambda w, d: d.joinpath("editor-script").write_text(s))(v)) for k, v in cluster_scripts.items()]
    c += [
        Case("edit-no-editor-no-terminal", ["edit", "cluster", KEPT], env={"EDITOR": "", "VISUAL": ""}, expect="no editor"),
        Case("edit-editor-missing", ["edit", "cluster", KEPT], env={"EDITOR": "/nonexistent/editor"}),
        Case("edit-editor-false", ["edit", "cluster", KEPT], env={"EDITOR": "false"}),
    ]
    return c


def store_cases() -> list[Case]:
    """Damaged file:// stores: each case gets its own copy of the pristine store."""
    cfg = f"{KEPT}/config"
    c: list[Case] = []
    damages: dict[str, Callable[[World, Path], None]] = {
        "config-fifo": _fifo(f"store/{cfg}"),
        "config-folder": lambda w, d: (d / "store" / cfg).unlink() or (d / "store" / cfg).mkdir(),
        "config-symlink-outside": lambda w, d: ((d / "outside.yaml").write_text((d / "store" / cfg).read_text()),
                                                (d / "store" / cfg).unlink(), (d / "store" / cfg).symlink_to(d / "outside.yaml")),
        "config-symlink-dev-zero": lambda w, d: ((d / "store" / cfg).unlink(), (d / "store" / cfg).symlink_to("/dev/zero")),
        "config-alias-bomb": _write(f"store/{cfg}", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"),
        "config-deep": _write(f"store/{cfg}", "[" * 5000 + "]" * 5000),
        "config-duplicate-key": lambda w, d: (d / "store" / cfg).write_text((d / "store" / cfg).read_text().replace(
            "  networkCIDR: 172.20.0.0/16\n", "  networkCIDR: 172.20.0.0/16\n  networkCIDR: 127.0.0.0/16\n")),
        "config-huge": _write(f"store/{cfg}", "#" + "x" * (2 * 1024 * 1024)),
        "config-binary": _write(f"store/{cfg}", b"\xff\xfe\x00garbage"),
        "config-base-s3": lambda w, d: (d / "store" / cfg).write_text(re.sub(
            r"configBase: .*", f"configBase: s3://elsewhere/{KEPT}", (d / "store" / cfg).read_text())),
        "config-other-name": lambda w, d: (d / "store" / cfg).write_text((d / "store" / cfg).read_text().replace(
            f"name: {KEPT}", "name: other.example.com")),
        "config-version-zero": lambda w, d: (d / "store" / cfg).write_text(re.sub(
            r"kubernetesVersion: .*", "kubernetesVersion: 01.36.0", (d / "store" / cfg).read_text())),
        "config-network-loopback": lambda w, d: (d / "store" / cfg).write_text(re.sub(
            r"networkCIDR: .*", "networkCIDR: 127.0.0.0/16", (d / "store" / cfg).read_text())),
        "ig-fifo": _fifo(f"store/{KEPT}/instancegroup/nodes"),
        "ig-alias-bomb": _write(f"store/{KEPT}/instancegroup/nodes", "a: &a [x,x,x]\nb: [*a,*a]\n"),
        "ig-duplicate-key": lambda w, d: (d / "store" / KEPT / "instancegroup" / "nodes").write_text(
            (d / "store" / KEPT / "instancegroup" / "nodes").read_text().replace("  minSize: 2\n", "  minSize: 2\n  minSize: 0\n")),
        "cp-group-missing": lambda w, d: (d / "store" / KEPT / "instancegroup" / "control-plane-us-east-1a").unlink(),
        "all-groups-missing": lambda w, d: shutil.rmtree(d / "store" / KEPT / "instancegroup"),
        "ssh-key-missing": lambda w, d: (d / "store" / KEPT / "ssh" / "public" / "admin").unlink(),
        "ssh-key-dsa": lambda w, d: (d / "store" / KEPT / "ssh" / "public" / "admin").write_text(Path(f"{w.keys['dsa']}.pub").read_text()),
        "ssh-key-garbage": _write(f"store/{KEPT}/ssh/public/admin", b"\xff\xfe\x00"),
        "ssh-key-fifo": _fifo(f"store/{KEPT}/ssh/public/admin"),
        "ca-crt-missing": lambda w, d: (d / "store" / KEPT / "pki" / "ca.crt").unlink(),
        "ca-key-missing": lambda w, d: (d / "store" / KEPT / "pki" / "ca.key").unlink(),
        "ca-crt-garbage": _write(f"store/{KEPT}/pki/ca.crt", "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"),
        "ca-mismatch": lambda w, d: shutil.copy(d / "store" / KEPT / "pki" / "front-proxy-ca.crt", d / "store" / KEPT / "pki" / "ca.crt"),
        "ca-key-symlink-outside": lambda w, d: ((d / "key").write_bytes((d / "store" / KEPT / "pki" / "ca.key").read_bytes()),
                                                (d / "store" / KEPT / "pki" / "ca.key").unlink(),
                                                (d / "store" / KEPT / "pki" / "ca.key").symlink_to(d / "key")),
        "pki-folder-symlink-outside": lambda w, d: (shutil.move(str(d / "store" / KEPT / "pki"), str(d / "pki-outside")),
                                                    (d / "store" / KEPT / "pki").symlink_to(d / "pki-outside")),
    }
    for damage, prepare in damages.items():
        for cmd in (["update", "cluster", KEPT], ["update", "cluster", KEPT, "--yes"]):
            c.append(Case(f"store-{damage}-{'-'.join(cmd[2:]) or 'plan'}", cmd, env={"KOPSY_STATE_STORE": "file://{case}/store"},
                          prepare=(lambda p: lambda w, d: _copy_then(w, d, p))(prepare)))
    readers = {
        "config-fifo": ["get", "cluster", KEPT], "config-folder": ["get", "cluster", KEPT],
        "config-symlink-outside": ["get", "cluster", KEPT, "-o", "yaml"], "config-alias-bomb": ["get", "cluster", KEPT],
        "config-deep": ["get", "cluster", KEPT], "config-duplicate-key": ["get", "cluster", KEPT],
        "config-huge": ["get", "cluster", KEPT], "ig-fifo": ["get", "ig", "--name", KEPT],
        "ig-alias-bomb": ["get", "ig", "--name", KEPT], "ig-duplicate-key": ["edit", "ig", "nodes", "--name", KEPT],
    }
    for damage, cmd in readers.items():
        c.append(Case(f"store-{damage}-{cmd[0]}", cmd, env={"KOPSY_STATE_STORE": "file://{case}/store", "EDITOR": "true"},
                      prepare=(lambda p: lambda w, d: _copy_then(w, d, p))(damages[damage])))
    holder = '{"holder": "mallory\\nError: all good", "host": "h\\u001b[2J", "pid": 1, "operation": "update\\r\\nok", ' \
             '"acquired": "2026-01-01T00:00:00.000Z", "expires": "2999-01-01T00:00:00.000Z"}\n'
    c.append(Case("store-lock-forged-lines", ["update", "cluster", KEPT, "--yes"], env={"KOPSY_STATE_STORE": "file://{case}/store"},
                  prepare=lambda w, d: _copy_then(w, d, _write(f"store/{KEPT}/lock", holder)), expect="is locked by mallory\\n"))
    c.append(Case("store-lock-garbage", ["update", "cluster", KEPT, "--yes"], env={"KOPSY_STATE_STORE": "file://{case}/store"},
                  prepare=lambda w, d: _copy_then(w, d, _write(f"store/{KEPT}/lock", b"\xff{")), expect="lock"))
    c.append(Case("store-root-is-file", ["get", "clusters"], env={"KOPSY_STATE_STORE": "file://{case}/file"},
                  prepare=_write("file", "x")))
    return c


def _copy_then(w: World, d: Path, damage: Callable[[World, Path], None]) -> None:
    shutil.copytree(w.pristine, d / "store", symlinks=True)
    damage(w, d)


def env_cases() -> list[Case]:
    c: list[Case] = []
    s3 = {"KOPSY_STATE_STORE": "s3://kopsy-hostile"}
    c += [
        Case("env-profile-missing", ["get", "clusters"], env={**s3, "AWS_PROFILE": "nope"}, expect="profile"),
        Case("env-config-unparsable", ["get", "clusters"], env={**s3, "AWS_PROFILE": "x"},
             prepare=lambda w, d: (d / "cfg").write_text("[profile x\nregion = = =\n[[[\n"), expect="config"),
        Case("env-credential-process-missing", ["get", "clusters"],
             env={**s3, "AWS_PROFILE": "cp", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
             prepare=lambda w, d: (d / "cfg").write_text("[profile cp]\ncredential_process = /nonexistent/helper --json\n"), expect="credential"),
        Case("env-credential-process-fails", ["get", "clusters"],
             env={**s3, "AWS_PROFILE": "cp", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
             prepare=lambda w, d: (d / "cfg").write_text("[profile cp]\ncredential_process = /bin/false\n"), expect="credential"),
        Case("env-credential-process-garbage", ["get", "clusters"],
             env={**s3, "AWS_PROFILE": "cp", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
             prepare=lambda w, d: (d / "cfg").write_text("[profile cp]\ncredential_process = /bin/echo not-json\n"), expect="credential"),
        Case("env-no-credentials", ["get", "clusters"], env={**s3, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, expect="credentials"),
    ]
    for url in ["not a url", "http://[::1", "ftp//x", "http://", "://", "http://127.0.0.1:99999", "http://a b:80"]:
        c.append(Case(f"env-endpoint-{url.strip()[:12] or 'blank'}-{len(url)}", ["get", "clusters"], env={**s3, "AWS_ENDPOINT_URL": url}))
    for var in ("KOPSY_AWS_RETRY_BUDGET", "KOPSY_AWS_READ_TIMEOUT", "KOPSY_AWS_CONNECT_TIMEOUT"):
        for v in ("abc", "-1", "0", "nan", "1e9"):
            c.append(Case(f"env-{var.lower()}-{v}", ["get", "clusters"], env={**s3, var: v}, expect=var.lower()))
    for url in ["s3://", "s3://UPPER", "s3://a", "s3://bucket?x=1", "file://relative/path", "file:///a\x01b",
                "http://example.com", "bucket-only", "file://host/path", "s3://bucket/../x", "s3://bucket/a b", "file:"]:
        c.append(Case(f"env-state-{url[:18]}-{len(url)}", ["get", "clusters"], env={"KOPSY_STATE_STORE": url}, expect="state store"))
    c.append(Case("env-state-echoed", ["get", "clusters"], env={"KOPSY_STATE_STORE": "s3://"}, expect="'s3://'"))
    c.append(Case("env-no-state", ["get", "clusters"], env={"KOPSY_STATE_STORE": ""}, expect="state store"))
    return c


def endpoint_cases() -> list[Case]:
    c: list[Case] = []
    commands = {
        "get-clusters": (["get", "clusters"], {"KOPSY_STATE_STORE": "s3://kopsy-hostile"}),
        "create": (_create(), {"KOPSY_STATE_STORE": "s3://kopsy-hostile"}),
        "delete-listing": (["delete", "cluster", NAME, "--region", "us-east-1"], {}),
        "update-s3": (["update", "cluster", NAME], {"KOPSY_STATE_STORE": "s3://kopsy-hostile"}),
    }
    for answer in ANSWERS:
        for label, (args, env) in commands.items():
            c.append(Case(f"endpoint-{answer}-{label}", args, env={**env, "AWS_ENDPOINT_URL": "{stub:" + answer + "}"}))
    return c


ALL = spec_cases() + flag_cases() + editor_cases() + store_cases() + env_cases() + endpoint_cases()
_IDS = [c.id for c in ALL]
assert len(set(_IDS)) == len(ALL), sorted({i for i in _IDS if _IDS.count(i) > 1})


# --- running a case --------------------------------------------------------------------------


def _fill(text: str, w: World, case: Path, stubs: dict[str, str]) -> str:
    out = text.replace("{case}", str(case)).replace("{pub}", str(w.pub))
    out = re.sub(r"\{key:(\w+)\}", lambda m: str(w.keys[m.group(1)]), out)
    out = re.sub(r"\{stub:([\w-]+)\}", lambda m: stubs[m.group(1)], out)
    if "{editor}" in out:
        out = out.replace("{editor}", _editor(w, case, (case / "editor-script").read_text()))
    return out


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_hostile_input_is_refused_in_one_specific_line(world: World, stubs: dict[str, str], case: Case,
                                                       tmp_path: Path) -> None:
    if "{key:" in " ".join(case.args):
        needed = re.findall(r"\{key:(\w+)\}", " ".join(case.args))
        if any(k not in world.keys for k in needed):
            pytest.skip(f"ssh-keygen cannot make {needed} keys here")
    case_dir = tmp_path
    if case.prepare is not None:
        case.prepare(world, case_dir)
    env = base_env(world.home, KOPSY_STATE_STORE=f"file://{world.pristine}")
    if (case_dir / "cfg").exists():
        env["AWS_CONFIG_FILE"] = str(case_dir / "cfg")
    for k, v in case.env.items():
        if v == "" and k.startswith("AWS_ACCESS") or v == "" and k.startswith("AWS_SECRET"):
            env.pop(k, None)
        else:
            env[k] = _fill(v, world, case_dir, stubs)
    args = [_fill(a, world, case_dir, stubs) for a in case.args]
    store_root = Path(env["KOPSY_STATE_STORE"].removeprefix("file://")) if env.get("KOPSY_STATE_STORE", "").startswith("file:///") else None
    watched = [world.pristine] + ([store_root] if store_root and store_root.exists() and store_root != world.pristine else [])
    before = [snapshot(root) for root in watched]
    started = time.monotonic()
    r = subprocess.run([KOPSY, *args], env=env, capture_output=True, text=True, timeout=case.timeout + 40,
                       stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    errors = one_error_line(r.stderr)
    OUTCOMES.append((case.id, r.returncode, errors[0] if errors else r.stderr[-200:]))
    assert r.returncode != 0, f"accepted: {r.stdout[-300:]} {r.stderr[-300:]}"
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-1500:]
    assert len(errors) == 1, r.stderr[-1500:]
    assert not re.match(r"Error: unexpected \w+", errors[0]), f"the catch-all fired: {errors[0]}"
    assert len(errors[0]) < 1500
    if case.expect:
        assert case.expect.lower() in errors[0].lower(), errors[0]
    assert took < case.timeout, f"took {took:.1f} s (bound {case.timeout} s)"
    for root, snap in zip(watched, before):
        assert snapshot(root) == snap, f"{root} changed"


def test_there_are_at_least_300_distinct_cases() -> None:
    assert len(ALL) >= 300, len(ALL)


def test_no_case_hit_the_catch_all() -> None:
    """Runs after the cases (pytest keeps file order): fails if any recorded outcome was the
    catch-all line."""
    assert not caught_by_catch_all(OUTCOMES), caught_by_catch_all(OUTCOMES)[:10]
    assert caught_by_catch_all([("x", 1, "Error: unexpected KeyError: 'ETag' (re-run with --debug for details)")])
