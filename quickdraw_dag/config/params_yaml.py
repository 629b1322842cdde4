"""Reading params YAML safely: bounded size and depth, no aliases, no duplicate keys.

PyYAML's `safe_load` builds no Python objects from tags, but it still
expands aliases (a few KB of `&a [*b, *b, ...]` grow to gigabytes once
anything walks the result), recurses once per nesting level (20,000 `[`
end in a RecursionError), silently keeps the last of two equal keys, and
raises plain ValueErrors for numbers Python will not convert. Params need
none of that: this loader refuses each with a `ConfigError` that names the
line and column, and quotes at most a short excerpt of the input.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from quickdraw_dag.errors import ConfigError, excerpt

MAX_PARAMS_BYTES = 256 * 1024  # params.yaml is about 5 KB
MAX_VALUE_BYTES = 64 * 1024  # one --set value
MAX_DEPTH = 32  # params nest four levels deep


class _ParamsLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, deep nesting and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
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
