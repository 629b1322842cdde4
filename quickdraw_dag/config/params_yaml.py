"""Reading params YAML safely: bounded size and depth, no aliases, no duplicate keys.

PyYAML's `safe_load` builds no Python objects from tags, but it still
expands aliases (a few KB of `&a [*b, *b, ...]` grow to gigabytes once
anything walks the result), recurses once per nesting level (20,000 `[`
end in a RecursionError), silently keeps the last of two equal keys, and
raises plain ValueErrors for numbers Python will not convert. Params need
none of that: this loader refuses each with a `ConfigError` that names the
line and column, and quotes at most a short excerpt of the input.

One dialect: YAML 1.2's core schema, exactly as DVC reads params.yaml (ruamel's
1.2 resolver) and as `persist_overrides` writes it (ruamel). PyYAML's own
resolver is YAML 1.1, where `1e-05` is a string and `yes`/`on` are booleans:
a value written by the 1.2 writer then read back differently, and the
workspace refused every later run. The 1.2 rules are taken from ruamel itself,
so the three can never drift apart.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from quickdraw_dag.errors import ConfigError, excerpt

MAX_PARAMS_BYTES = 256 * 1024  # params.yaml is about 5 KB
MAX_VALUE_BYTES = 64 * 1024  # one --set value
MAX_DEPTH = 32  # params nest four levels deep
MAX_LOCK_BYTES = 16 * 1024 * 1024  # dvc.lock: one entry per output, a few hundred bytes each


YAML_VERSION = (1, 2)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Yaml12Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema: ruamel's own implicit resolvers for 1.2 (the ones DVC reads params with)."""


def _register_yaml12_resolvers() -> None:
    from ruamel.yaml.resolver import implicit_resolvers

    for versions, tag, regexp, first in implicit_resolvers:
        if YAML_VERSION in versions:
            _Yaml12Resolver.add_implicit_resolver(str(tag), regexp, first)


_register_yaml12_resolvers()


class _Yaml12Constructor(yaml.constructor.SafeConstructor):
    """Integers as YAML 1.2 reads them: `0o17` is octal, `017` is seventeen, `1:30` is no number."""

    def construct_yaml_int(self, node: ScalarNode) -> int:  # type: ignore[override]
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text[0] == "-" else 1
        text = text.lstrip("+-")
        for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
            if text.startswith(prefix):
                return sign * int(text[2:], base)
        return sign * int(text)


_Yaml12Constructor.add_constructor("tag:yaml.org,2002:int", _Yaml12Constructor.construct_yaml_int)


class _ParamsLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Yaml12Constructor,
    _Yaml12Resolver,
):
    """A YAML 1.2 safe loader that refuses aliases, deep nesting and duplicate keys."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Yaml12Constructor.__init__(self)
        _Yaml12Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"alias *{excerpt(str(event.anchor), 40)}: aliases are not allowed in params",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.MarkedYAMLError(
                    problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_scalar(self, node: Node) -> Any:
        value = super().construct_scalar(node)  # type: ignore[arg-type]
        if isinstance(value, str) and _SURROGATE.search(value):
            # an escape such as "\ud800": no Unicode character, and no writer or UTF-8 file can hold it
            raise ConstructorError(
                problem="a \\u escape names a UTF-16 surrogate, not a character (write the character itself)",
                problem_mark=node.start_mark,
            )
        return value

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise ConstructorError(
                        problem="a key must be a plain value, not a list or mapping", problem_mark=key_node.start_mark
                    ) from None
                if key in seen:
                    first = seen[key]
                    raise ConstructorError(
                        problem=f"duplicate key {excerpt(str(key), 40)} (first at line {first.line + 1})",
                        problem_mark=key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def decode(data: bytes, source: str) -> str:
    """UTF-8 text (a BOM is dropped) or a ConfigError naming the byte offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: not UTF-8 text (byte offset {error.start})") from None
    return text.removeprefix("\ufeff")


def load_yaml(text: str, source: str, *, max_bytes: int = MAX_PARAMS_BYTES) -> Any:
    """Parse `text` with the params loader; every problem is a ConfigError naming `source` and the place."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ConfigError(f"{source}: larger than the {max_bytes} bytes allowed for params")
    loader = None
    try:
        loader = _ParamsLoader(text)  # the reader checks every character here
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise ConfigError(f"{source}:{where} not valid YAML: {error.problem}") from None
    except yaml.reader.ReaderError as error:
        before = text[: error.position]
        line, column = before.count("\n") + 1, error.position - (before.rfind("\n") + 1) + 1
        raise ConfigError(
            f"{source}: line {line}, column {column}: character #x{error.character:04x} is not allowed "
            "(control characters and NUL bytes are not YAML)"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({type(error).__name__})") from None
    except (ValueError, OverflowError) as error:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{source}: a value cannot be converted: {excerpt(str(error), 120)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_bytes(data: bytes, source: str, *, max_bytes: int = MAX_PARAMS_BYTES) -> Any:
    """`load_yaml` of UTF-8 bytes (a params file or a dvc.lock, from disk or from a run's artifacts)."""
    return load_yaml(decode(data, source), source, max_bytes=max_bytes)


def dump_yaml(data: Any) -> str:
    """Plain data as YAML 1.2 block text, as DVC writes it and `load_yaml` reads it back."""
    from io import StringIO

    from ruamel.yaml import YAML

    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    buffer = StringIO()
    writer.dump(data, buffer)
    return buffer.getvalue()
