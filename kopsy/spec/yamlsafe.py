"""The one YAML reader for specs (files, ``$EDITOR`` output and state-store objects).

Specs are small, flat documents, so anything unusual is refused rather than expanded:

- **anchors and aliases** (``&a``, ``*a``, ``<<: *a``): an alias bomb (a billion laughs) expands
  exponentially; kopsy never writes them and specs do not need them;
- **nesting deeper than ``MAX_DEPTH``**: thousands of ``[`` would otherwise end in a RecursionError;
- **duplicate keys** (``minSize: 2`` then ``minSize: 0``): YAML keeps the last silently; the
  error names the line of both;
- **more than ``MAX_NODES`` values** and integers longer than ``MAX_INT_DIGITS`` digits.

Errors are ``yaml.YAMLError`` subclasses with a position, so callers report them like syntax errors.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_INT_DIGITS = 30


class StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, "YAML anchors and aliases (&name, *name) are not allowed in kopsy specs",
                                event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values; a kopsy spec is far smaller", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConstructorError(None, None, "YAML merge keys (<<) are not allowed in kopsy specs", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: SafeConstructor reports it
                if first is not None:
                    raise ConstructorError(
                        None, None, f"duplicate key {str(key)[:60]!r} (first at line {first})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> Any:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"a number of {digits} digits is far too large", node.start_mark)
        return super().construct_yaml_int(node)


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (``yaml.YAMLError`` on anything refused above)."""
    loader = StrictLoader(text)
    try:
        out = []
        while loader.check_data():
            out.append(loader.get_data())
        return out
    finally:
        loader.dispose()


def load_one(text: str) -> Any:
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
