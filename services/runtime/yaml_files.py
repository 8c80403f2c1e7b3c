"""YAML parsing that remembers line numbers, to point validation errors at the file.

The loader is PyYAML's safe loader with YAML 1.2 numbers: `17:30` stays the string
"17:30" instead of YAML 1.1's sexagesimal integer 1050. Duplicate keys are an error
(PyYAML would silently keep the last one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


class YamlProblem(Exception):
    """A YAML syntax or structure problem at a 1-based line (None if unknown)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse(text: str) -> tuple[Any, Node | None]:
    """The document's data and its node tree (for `line_of`); raises YamlProblem."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            return None, None
        _no_duplicate_keys(node)
        loader = _Loader("")
        try:
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and mark and exc.context_mark.line != mark.line:
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise YamlProblem(mark.line + 1 if mark else None, f"YAML error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, f"YAML error: {exc}") from None
    return data, node


def _no_duplicate_keys(node: Node) -> None:
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                if key.value in seen:
                    raise YamlProblem(key.start_mark.line + 1, f"duplicate key '{key.value}'")
                seen.add(key.value)
            _no_duplicate_keys(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _no_duplicate_keys(item)


def line_of(root: Node | None, loc: Sequence[str | int]) -> int:
    """The 1-based line of the key (or list item) at `loc`; the nearest existing parent's
    line when the path does not exist (a missing key points at its enclosing mapping)."""
    if root is None:
        return 1
    node, line = root, root.start_mark.line
    for part in loc:
        if isinstance(node, MappingNode) and part != "[key]":
            match = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, ScalarNode) and k.value == str(part)
                ),
                None,
            )
            if match is None:
                break
            line, node = match[0].start_mark.line, match[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1


def path_text(loc: tuple[str | int, ...]) -> str:
    """`rules[2].budget` for a pydantic error location."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            out += f".{part}" if out else part
    return out or "(top level)"


def error_text(err: ErrorDetails) -> str:
    """A pydantic error's message in policy-file words."""
    kind, msg, loc = err["type"], err["msg"], err["loc"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if kind == "missing":
        return f"missing key '{loc[-1]}'"
    msg = msg.removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in err:
        msg += f", got {err['input']!r}"
    return msg


class LocatedError(ValueError):
    """A validation error about a value below the model that raises it (`loc` is relative)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class YamlInvalid(Exception):
    """Problems found in a YAML file, each with its 1-based line (None if unknown)."""

    def __init__(self, problems: list[tuple[int | None, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


M = TypeVar("M", bound=BaseModel)


def validate_yaml(model: type[M], text: str, expected: str) -> M:
    """Parse YAML `text` into `model`; every problem is reported with its line.

    `expected` describes the top level, e.g. "a mapping with version, calendars, rules".
    """
    try:
        data, root = parse(text)
    except YamlProblem as exc:
        raise YamlInvalid([(exc.line, exc.message)]) from None
    if not isinstance(data, dict):
        raise YamlInvalid([(1, f"expected {expected}")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[int | None, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, LocatedError):
                loc += cause.loc
            problems.append((line_of(root, loc), f"{path_text(loc)}: {error_text(err)}"))
        raise YamlInvalid(problems) from None


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; the message names the file and the line."""

    def __init__(self, source: str, problems: list[tuple[int | None, str]]) -> None:
        self.source = source
        self.problems = problems
        self.line = problems[0][0] if problems else None
        super().__init__(
            "\n".join(
                f"{source}, line {line}: {msg}" if line else f"{source}: {msg}"
                for line, msg in problems
            )
        )
