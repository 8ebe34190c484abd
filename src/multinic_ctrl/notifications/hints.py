"""Configs a notification marked "OpenStack may have changed": their next reconcile calls OpenStack although
neither their spec nor their resync schedule asks for it.

A mark lives until a reconcile that *saw* it succeeds: `pending()` hands out the mark's token when a
reconcile decides, `done()` clears the mark only if it still carries that token - a notification that arrived
while the reconcile was observing marks again and is not lost. A reconcile that fails keeps the mark, so its
retry observes again instead of being skipped as "unchanged". Memory: one entry per marked config, removed
on success or deletion.
"""

from __future__ import annotations

import itertools


class ChangeHints:
    def __init__(self) -> None:
        self._marks: dict[str, int] = {}
        self._tokens = itertools.count(1)

    def mark(self, key: str) -> None:
        self._marks[key] = next(self._tokens)

    def pending(self, key: str) -> int | None:
        return self._marks.get(key)

    def done(self, key: str, token: int | None) -> None:
        if token is not None and self._marks.get(key) == token:
            del self._marks[key]

    def forget(self, key: str) -> None:
        self._marks.pop(key, None)

    def __len__(self) -> int:
        return len(self._marks)
