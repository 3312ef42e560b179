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
# Secrets inside text, such as an exception's message, and what replaces each.
SECRETS_IN_TEXT = (
    (re.compile(r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), MASK),
    # The password of a URL: scheme://user:password@host
    (re.compile(r"(://[^/\s:@]*:)[^/\s@]+@"), rf"\1{MASK}@"),
    # key=value and key: value, quoted or not: password=..., "token": "..."
    (
        re.compile(
            r"((?i:pass(?:word|wd)?|pwd|secret|token|api[-_]?key)[\"']?\s*[=:]\s*[\"']?)"
            r"[^\s\"'&,;]+"
        ),
        rf"\1{MASK}",
    ),
)
# Every secret in text holds one of these (lowercased): the others are left alone.
SECRET_MARKERS = ("bearer", "sk-", "://", "pass", "pwd", "secret", "token", "key")


def mask_value(value: Any) -> Any:
    """Return ``value`` with secrets masked, looking inside dicts, lists and tuples."""
    if isinstance(value, str):
        return mask_text(value) if _may_hold_secret(value) else value
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list | tuple):
        return type(value)(mask_value(item) for item in value)
    return value


def mask_text(text: str) -> str:
    """Return ``text`` with the secrets it holds masked: tokens, passwords, keys."""
    for pattern, replacement in SECRETS_IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


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
    # A cheap pre-check keeps the regexes off the hot path for ordinary strings.
    lowered = text.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)
