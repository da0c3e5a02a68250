"""``kopsy edit cluster|instancegroup``: edit a spec in $EDITOR, the kubectl way.

Invalid input reopens the editor with the problems on top; only a valid spec is written, and
it is written with the ETag that was read, so a concurrent edit is a conflict, never a lost write.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from kopsy.cli.context import open_cluster_store, resolve_cluster_name
from kopsy.cli.get import AliasGroup
from kopsy.errors import KopsyError, SpecInvalid, UsageError
from kopsy.localfiles import SPEC_FILE_LIMIT, LocalFileError, read_text
from kopsy.spec.documents import load_yaml_documents
from kopsy.spec.model import cluster_from_dict, cluster_to_dict, instance_group_from_dict, instance_group_to_dict
from kopsy.spec.validation import validate_cluster

HEADER = (
    "# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
    "# and an empty file will abort the edit. If an error occurs while saving this file will be\n"
    "# reopened with the relevant failures.\n#\n"
)
MAX_ROUNDS = 20  # an editor that keeps returning bad input must not loop forever


@click.group(cls=AliasGroup)
def command() -> None:
    """Edit a cluster or instance group in $EDITOR."""


class EditCancelled(KopsyError):
    pass


def _editor_command() -> str:
    """$VISUAL, else $EDITOR; without either, vi, but only on a terminal: a fallback editor
    started without one waits forever for keys that never come."""
    editor = (os.environ.get("VISUAL") or os.environ.get("EDITOR") or "").strip()
    if editor:
        return editor
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "no editor: set EDITOR (or VISUAL), e.g. EDITOR=nano; without a terminal use "
            "'kopsy get ... -o yaml > FILE', change FILE, then 'kopsy replace -f FILE'"
        )
    return "vi"


def run_editor(text: str) -> str:
    """Open ``text`` in the user's editor and return what was saved (refusing what is not text).

    The file lives in a private temporary folder; what comes back is read like any untrusted
    file: a regular file (not deleted, not replaced by a folder or a FIFO), UTF-8, within the cap.
    """
    editor = _editor_command()
    with tempfile.TemporaryDirectory(prefix="kopsy-edit-") as folder:
        path = Path(folder) / "spec.yaml"
        path.write_text(text)
        try:
            code = subprocess.call(f"{editor} {shlex.quote(str(path))}", shell=True)
        except OSError as exc:
            raise EditCancelled(f"cannot start the editor {editor!r}: {exc.strerror or exc}; nothing was written") from None
        if code != 0:
            raise EditCancelled(f"edit cancelled: the editor {editor[:60]!r} exited with status {code}; nothing was written")
        if not path.exists() and not path.is_symlink():
            raise EditCancelled("edit cancelled: the editor removed the file instead of saving it; nothing was written")
        try:
            return read_text(path, SPEC_FILE_LIMIT, "edited spec")
        except LocalFileError as exc:
            raise EditCancelled(f"edit cancelled: {exc.message}; nothing was written") from None


def _edit_loop(original: dict[str, Any], parse: Callable[[dict[str, Any]], Any]) -> Any | None:
    """Edit until the text parses and validates; None when nothing changed."""
    text = yaml.safe_dump(original, sort_keys=False)
    errors: list[str] = []
    for _ in range(MAX_ROUNDS):
        banner = HEADER + "".join(f"# Error: {e}\n" for e in errors) + ("#\n" if errors else "")
        edited = run_editor(banner + text)
        body = "\n".join(line for line in edited.splitlines() if not line.lstrip().startswith("#")).strip()
        if not body:
            raise EditCancelled("edit cancelled: the file was empty; nothing was written")
        try:
            docs = load_yaml_documents(body, "edited spec")
            if len(docs) != 1:
                raise SpecInvalid([f"edited spec: expected one document, got {len(docs)}"])
            if docs[0] == original:
                return None
            return parse(docs[0])
        except SpecInvalid as exc:
            errors = exc.problems
            text = body + "\n"
    last = f" (the last one: {errors[0][:200]})" if errors else ""
    raise EditCancelled(f"edit abandoned after {MAX_ROUNDS} invalid attempts{last}; nothing was written")


@command.command("cluster")
@click.argument("name", required=False)
def edit_cluster(name: str | None) -> None:
    """Edit the Cluster spec."""
    store = open_cluster_store()
    name = resolve_cluster_name(store, name)
    listing, (cluster, etag), entries = store.read_spec(name)
    groups = [ig for ig, _ in entries]

    def parse(doc: dict[str, Any]) -> Any:
        edited = cluster_from_dict(doc)
        if edited.name != name:
            raise SpecInvalid([f"metadata.name: a cluster cannot be renamed ({name} -> {edited.name})"])
        here = store.url_for(name)
        if edited.config_base and edited.config_base.rstrip("/") != here:
            raise SpecInvalid([f"spec.configBase: must be the store the cluster lives in ({here}), not {edited.config_base!r}"])
        validate_cluster(edited, groups)
        return edited

    edited = _edit_loop(cluster_to_dict(cluster), parse)
    if edited is None:
        click.echo("Edit cancelled, no changes made.")
        return
    store.replace_cluster(edited, etag, listing)
    store.save_reads(listing)  # the next update reads it from the cache
    click.echo(f'Cluster "{name}" updated in the state store. Review with: kopsy update cluster {name}')


@command.command("instancegroups")
@click.argument("group")
def edit_instance_group(group: str) -> None:
    """Edit one InstanceGroup spec (also: edit ig NAME)."""
    store = open_cluster_store()
    name = resolve_cluster_name(store, None)
    listing, (cluster, _), entries = store.read_spec(name)
    found = [(ig, etag) for ig, etag in entries if ig.name == group]
    if not found:
        raise KopsyError(
            f"instance group {group!r} not found in cluster {name}; it has: {', '.join(ig.name for ig, _ in entries)}"
        )
    ig, etag = found[0]
    others = [other for other, _ in entries if other.name != group]

    def parse(doc: dict[str, Any]) -> Any:
        edited = instance_group_from_dict(doc, name)
        if edited.name != group:
            raise SpecInvalid([f"metadata.name: an instance group cannot be renamed ({group} -> {edited.name})"])
        validate_cluster(cluster, others + [edited])
        return edited

    edited = _edit_loop(instance_group_to_dict(ig), parse)
    if edited is None:
        click.echo("Edit cancelled, no changes made.")
        return
    store.replace_instance_group(edited, etag, listing)
    store.save_reads(listing)  # the next update reads it from the cache
    click.echo(f'Instance group "{group}" updated. Review with: kopsy update cluster {name}')
