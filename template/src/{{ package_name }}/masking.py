"""Masking of secrets in log events (and anything else that reports data)."""

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

MASK = "***"

SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[-_]?key|authorization|cookie|credential|"
    r"private[-_]?key|dsn",
    re.IGNORECASE,
)
SENSITIVE_VALUE = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+|\bsk-[A-Za-z0-9_-]{8,}",
)


def mask_value(value: Any) -> Any:
    """Return ``value`` with secrets masked, looking inside dicts, lists and tuples."""
    if isinstance(value, str):
        return SENSITIVE_VALUE.sub(MASK, value) if _may_hold_secret(value) else value
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list | tuple):
        return type(value)(mask_value(item) for item in value)
    return value


def mask_mapping(data: Mapping[Any, Any]) -> dict[Any, Any]:
    """Copy ``data``, masking values under sensitive keys and secret-looking values."""
    return {
        key: MASK
        if isinstance(key, str) and is_sensitive_key(key)
        else mask_value(value)
        for key, value in data.items()
    }


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Whether values under ``key`` are secrets (cached: the same keys recur)."""
    return SENSITIVE_KEY.search(key) is not None


def _may_hold_secret(text: str) -> bool:
    # A cheap pre-check keeps the regex off the hot path for ordinary strings.
    return "sk-" in text or "earer" in text or "EARER" in text
