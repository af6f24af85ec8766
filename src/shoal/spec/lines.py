"""YAML (and JSON) read with line numbers, and held to the bounds while it is read.

Every mapping of a document comes back as a :class:`LineDict` that knows its
own line and each key's, so that a mistake found later, however deep, is
reported at its line. The node graph is checked against
:mod:`~shoal.spec.bounds` before any Python object is made from it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from shoal.exceptions import SpecError
from shoal.spec import bounds

__all__ = ["LineDict", "line_of", "parse_document", "too_deep"]

_COMPACT_RE = re.compile(r"[-?][ \t]+[-?]")  # '- - x': a list in a list, on one line


class LineDict(dict[str, Any]):
    """A mapping from YAML that remembers its own line and each key's line."""

    line: int | None = None
    key_lines: dict[str, int]


# libyaml's parser where it is installed: ten times faster on large files.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    made = LineDict()
    made.line = node.start_mark.line + 1
    made.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        made[key] = loader.construct_object(value_node, deep=True)
        made.key_lines[key] = key_node.start_mark.line + 1
    return made


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def line_of(obj: Any, key: str | None = None) -> int | None:
    """The line of a mapping read from YAML, or of one of its keys; None for other data."""
    if isinstance(obj, LineDict):
        if key is not None and key in obj.key_lines:
            return obj.key_lines[key]
        return obj.line
    return None


def too_deep() -> str:
    """The message for a document nested past the bound."""
    return f"lists and mappings nest deeper than {bounds.MAX_DEPTH} levels"


def parse_document(text: str, path: str) -> Any:
    """The plain data of a YAML document, mappings as :class:`LineDict`; SpecError if it is not."""

    def fail(message: str, line: int | None, task: str | None) -> SpecError:
        return SpecError(message, path=path, line=line, task=task)

    _check_nesting(text, fail)
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # Before any object is made: what the aliases expand to, how deep, how long.
        bounds.check_yaml_nodes(node, fail)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "syntax error"
        raise SpecError(f"invalid YAML: {problem}{_hint(problem)}", path=path, line=line) from None
    except yaml.YAMLError as e:
        if path.endswith(".json"):
            # Valid JSON that YAML refuses (tabs, say): take it without lines.
            return json.loads(text)
        raise SpecError(f"invalid YAML: {e}", path=path) from None
    except RecursionError:
        raise SpecError(too_deep(), path=path) from None
    except (ValueError, OverflowError) as e:  # a date like 2024-13-45
        raise SpecError(f"invalid YAML: {e}", path=path) from None
    finally:
        loader.dispose()


def _check_nesting(text: str, fail: bounds.Fail) -> None:
    """Refuse nesting past :data:`~shoal.spec.bounds.MAX_DEPTH` before libyaml composes it.

    Composing recurses in C: a hundred thousand ``[`` crash the process.
    Nesting comes from brackets, from ``- -`` (or ``?``) on one line, or from
    indentation, which needs a longer line per level (two thousand levels
    take megabytes); a document with few of the first and under a megabyte
    cannot nest deep enough to matter, and the others are read as a stream
    of events first, which recurses nowhere.
    """
    marks = text.count("[") + text.count("{") + len(_COMPACT_RE.findall(text))
    if marks < 2000 and len(text) < 1_000_000:
        return
    loader = _LineLoader(text)
    try:
        depth = 0
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > bounds.MAX_DEPTH:
                    mark = event.start_mark
                    raise fail(too_deep(), mark.line + 1 if mark is not None else None, None)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # the parse proper says what is wrong, with its line
    finally:
        loader.dispose()


def _hint(problem: str) -> str:
    """How to fix the YAML mistakes a command line makes most often."""
    if "mapping values are not allowed" in problem:
        # `run: echo '{"a": 1}' | jq .a`: a ': ' inside a plain value starts a mapping.
        return (
            " (quote the whole value, as in run: \"...\", or write 'run: |' "
            "and the command on the next line, indented)"
        )
    return ""
