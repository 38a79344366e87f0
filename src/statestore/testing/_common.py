"""What the contract modules share: awkward keys and a record maker."""

from __future__ import annotations

from typing import Any

from statestore.testing.models import Task

__all__ = ["AWKWARD_KEYS", "task"]

AWKWARD_KEYS = [
    "plain",
    "with space",
    "a/b",
    "../escape",
    "..",
    ".",
    ".hidden",
    "back\\slash",
    "Foo",
    "foo",
    "FOO",
    "CON",
    "nul.txt",
    "ünïcödé ✓",
    "日本語",
    "emoji 🎉",
    "x" * 300,
    "trailing.",
    "trailing ",
    "pct%_like",
    "quote\"'",
    "nul\x00byte",
    "new\nline",
]


def task(key: str = "t1", **kw: Any) -> Task:
    return Task(key, **kw)
