"""The one YAML reader for specs (files, ``$EDITOR`` output and state-store objects).

Specs are small, flat documents, so anything unusual is refused rather than expanded:

- **anchors and aliases** (``&a``, ``*a``, ``<<: *a``): an alias bomb (a billion laughs) expands
  exponentially; kopsy never writes them and specs do not need them;
- **nesting deeper than ``MAX_DEPTH``**: thousands of ``[`` would otherwise end in a RecursionError;
- **duplicate keys** (``minSize: 2`` then ``minSize: 0``): YAML keeps the last silently; the
  error names the line of both;
- **more than ``MAX_NODES`` values** and integers longer than ``MAX_INT_DIGITS`` digits.

Errors are ``yaml.YAMLError`` subclasses with a position, so callers report them like syntax errors.

libyaml (PyYAML's C parser) reads when PyYAML was built with it, as it is in its wheels; the
pure-Python reader otherwise. Both refuse the same input (tests/spec/test_yamlsafe.py).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_INT_DIGITS = 30


class _Limits:
    """The composer-level refusals (aliases, depth, size), counted one node at a time."""

    def __init__(self) -> None:
        self.depth = 0
        self.nodes = 0

    def enter(self, event: Any) -> None:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, "YAML anchors and aliases (&name, *name) are not allowed in kopsy specs",
                                event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values; a kopsy spec is far smaller", event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)


class StrictConstructor(yaml.constructor.SafeConstructor):
    """SafeConstructor, refusing merge keys, duplicate keys and overlong integers."""

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


StrictConstructor.add_constructor("tag:yaml.org,2002:int", StrictConstructor.construct_yaml_int)  # type: ignore[type-var]


class StrictLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                   StrictConstructor, yaml.resolver.Resolver):
    """PyYAML's pure-Python loader with the refusals: used where libyaml is not built in."""

    def __init__(self, stream: Any) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        StrictConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._limits = _Limits()

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._limits.enter(self.peek_event())
        try:
            return super().compose_node(parent, index)
        finally:
            self._limits.depth -= 1


# libyaml's parser, when PyYAML was built with it: a spec's documents load ~6x faster (a no-op
# update reads seven). Its composer runs in C and cannot refuse anything, so its events are
# checked in a first pass (``_check``), which also keeps deep nesting away from that composer.
# Two passes in C cost less than one through PyYAML's Python composer (~0.36 against ~0.6 ms).
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)


if _CParser is not None:

    class _CStrictLoader(_CParser, StrictConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        def __init__(self, stream: Any) -> None:
            _CParser.__init__(self, stream)
            StrictConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


def _check(text: str) -> None:
    limits = _Limits()
    parser = _CParser(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)):
                limits.enter(event)
                if not isinstance(event, yaml.CollectionStartEvent):
                    limits.depth -= 1
            elif isinstance(event, yaml.CollectionEndEvent):
                limits.depth -= 1
    except yaml.MarkedYAMLError as exc:
        # libyaml's scanner looks ahead (a flow "[" may start a key), so a thousand "[" reach
        # its own nesting limit before the events above reach ours: the same refusal.
        if "nesting depth" not in str(exc.problem):
            raise
        raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", exc.problem_mark) from None
    finally:
        parser.dispose()


def _loader(text: str) -> Any:
    if _CParser is None:
        return StrictLoader(text)
    _check(text)
    return _CStrictLoader(text)


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (``yaml.YAMLError`` on anything refused above)."""
    loader = _loader(text)
    try:
        out = []
        while loader.check_data():
            out.append(loader.get_data())
        return out
    finally:
        loader.dispose()


def load_one(text: str) -> Any:
    loader = _loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
