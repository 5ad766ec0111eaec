"""JSON from outside (a request body, a bundle's table, a WebSocket message, a teammate's spec):
parsed with a cap on nesting, so that ``[[[[...]]]]`` is refused as bad input instead of
raising ``RecursionError`` in the parser or in whatever walks the value afterwards."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # far beyond any shape this project reads or writes (a bundle row nests 3 deep)


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(data)``, refusing values nested deeper than ``max_depth`` levels.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``, a ValueError), not UTF-8
            (``UnicodeDecodeError``, a ValueError) or nested too deep.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if depth(value) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value


def depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
