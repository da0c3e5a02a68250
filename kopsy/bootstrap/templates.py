"""The jinja2 environment that renders ``cloudinit/``'s templates (user-data, the etcd module,
the addons). A module of its own so that only a render that misses ``kopsy.bootstrap.rendercache``
imports jinja2 (~25 ms of CPU): a no-op update renders nothing."""

from __future__ import annotations

import os
import shlex
import threading
from pathlib import Path
from typing import Any

import jinja2

from kopsy.bootstrap.render import RenderError, template_dirs

_ENV: jinja2.Environment | None = None
_ENV_LOCK = threading.Lock()  # one compile per template, even when groups render in parallel


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """jinja2's compiled templates kept on disk between runs: compiling the templates (the boot
    script, the helper and etcd code, the addons) cost a run ~45 ms of CPU, loading them ~2 ms.
    jinja2 checks each entry against the template's source and its own version, so an edited
    template or an upgraded jinja2 is compiled afresh. A cache only: if it cannot be written
    (read-only home), templates are compiled as before."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # unreadable or damaged (a truncated entry fails in pickle): compile again
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _env() -> jinja2.Environment:
    """Templates from the installed wheel (kopsy/_cloudinit), else the repository's cloudinit/."""
    global _ENV
    if _ENV is None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(d)) for d in template_dirs() if d.is_dir()]
        from kopsy import templatecache

        folder = templatecache.compiled()
        env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            bytecode_cache=_BytecodeCache(str(folder), "%s.jinja") if folder is not None else None,
        )
        env.filters["q"] = lambda v: shlex.quote(str(v))
        _ENV = env
    return _ENV


def _template(name: str) -> jinja2.Template:
    with _ENV_LOCK:
        return _env().get_template(name)


def render_template(name: str, **ctx: Any) -> str:
    """One template of ``cloudinit/`` rendered with ``ctx`` (undefined names are errors)."""
    try:
        return _template(name).render(**ctx)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(
            f"bootstrap template {name} is missing from this kopsy installation (looked in "
            f"{', '.join(str(d) for d in template_dirs())}); reinstall kopsy"
        ) from exc

