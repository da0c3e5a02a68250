"""Nothing in kopsy outside the sandbox knows the sandbox exists (docs/sandbox.md, "SSH config").

kopsy reaches the sandbox only through ``AWS_ENDPOINT_URL`` and an ssh config, like any other
environment. Enforced two ways, over every module of ``kopsy/`` except the sandbox's own
(``kopsy/sandbox/`` and its CLI ``kopsy/cli/sandbox.py``):

- by the syntax tree: no import of the sandbox, and no name, attribute, argument or string
  that says "sandbox" -- docstrings and comments may (they explain, they do not depend); the
  one allowed code mention is the command table in ``kopsy/cli/main.py``;
- at run time: importing every one of those modules loads no sandbox module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kopsy"
SANDBOX_MODULES = ("kopsy.sandbox", "kopsy.cli.sandbox")


def _outside_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py")
        if "sandbox" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "cli" / "sandbox.py"
    )


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _command_table_lines(tree: ast.Module) -> range:
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in targets):
                return range(node.lineno, (node.end_lineno or node.lineno) + 1)
    return range(0)


def mentions(path: Path, rel: str = "") -> list[str]:
    """Code (not docstrings or comments) in ``path`` (as ``rel`` under the repository) that refers to the sandbox."""
    rel = rel or str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    allowed_lines = _command_table_lines(tree) if rel == "kopsy/cli/main.py" else range(0)
    found = []
    for node in ast.walk(tree):
        words: list[str] = []
        if isinstance(node, ast.Import):
            words = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            words = [node.module or "", *(a.name for a in node.names)]
        elif isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words = [node.name]
        elif isinstance(node, ast.arg):
            words = [node.arg]
        elif isinstance(node, ast.keyword):
            words = [node.arg or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and id(node) not in docs:
            if getattr(node, "lineno", 0) in allowed_lines:
                continue
            words = [node.value.decode(errors="replace") if isinstance(node.value, bytes) else node.value]
        for w in words:
            if "sandbox" in w.lower():
                found.append(f"{rel}:{getattr(node, 'lineno', '?')}: {w!r}")
    return found


def test_no_module_outside_the_sandbox_refers_to_it() -> None:
    modules = _outside_modules()
    assert len(modules) > 20, "expected to scan all of kopsy/"
    found = [m for p in modules for m in mentions(p)]
    assert found == [], "kopsy must reach the sandbox only through AWS_ENDPOINT_URL and the ssh config:\n" + "\n".join(found)


def test_the_check_catches_a_mention(tmp_path: Path) -> None:
    """The scan itself works: an import, a name and a string are caught; a docstring is not."""
    probe = tmp_path / "probe.py"
    probe.write_text('"""The sandbox may be explained."""\nimport kopsy.sandbox.control\nsandbox_dir = 1\nX = "KOPSY_SANDBOX_ID"\n')
    found = mentions(probe, "kopsy/validate/probe.py")
    assert [f.split(":")[1] for f in found] == ["2", "3", "4"], found


def test_importing_kopsy_loads_no_sandbox_module() -> None:
    names = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in _outside_modules()
    ]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        f"print([m for m in sys.modules if m.startswith({SANDBOX_MODULES!r})])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
