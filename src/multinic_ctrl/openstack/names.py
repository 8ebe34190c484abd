"""Turn a set of VM names into few Nova `name` filters (pure, no I/O).

Nova treats `GET /servers?name=X` as a regular expression with *partial* (search) matching, so
`name=test-vm-1` also returns `test-vm-10` and `test-vm-1.backup`. On MySQL/MariaDB-backed Nova every
`|` in the filter is escaped before it reaches `REGEXP` (nova `db/utils.py`, `_safe_regex_mysql`), so an
alternation such as `^(a|b)$` silently matches nothing. We therefore never put `|` in a pattern: names
are grouped by common prefix, each group becomes one anchored, escaped prefix pattern, and the caller
verifies exact names.

The number of groups depends on how many naming families the names fall into, not on how many names
there are, so `observe` makes the same number of Nova calls for 1, 10 or 1000 VMs named `test-vm-N`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Backslash-escaping these works the same in Python `re`, PCRE (MariaDB), ICU (MySQL 8) and POSIX ERE
# (older MySQL). `-` and other ordinary characters are deliberately *not* escaped: `\-` is undefined in
# POSIX ERE. `|` is never emitted at all (see module docstring).
_REGEX_META = frozenset(".^$*+?()[]{}\\")

DEFAULT_MAX_QUERIES = 8
DEFAULT_MIN_PREFIX = 4


@dataclass(frozen=True)
class NameQuery:
    """One Nova `name` filter and the requested names it is meant to find."""

    pattern: str
    names: frozenset[str]


def escape_regex(text: str) -> str:
    """Escape regex metacharacters portably; the input must not contain `|`."""
    if "|" in text:
        raise ValueError("'|' cannot be expressed in a Nova name filter")
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in text)


def _safe_part(name: str) -> str:
    """The part of a name usable in a pattern: everything before the first `|`."""
    cut = name.find("|")
    return name if cut < 0 else name[:cut]


def _common_prefix(strings: Iterable[str]) -> str:
    items = list(strings)
    if not items:
        return ""
    lo, hi = min(items), max(items)  # the LCP of a set is the LCP of its min and max
    n = 0
    while n < len(lo) and n < len(hi) and lo[n] == hi[n]:
        n += 1
    return lo[:n]


def _prefix(group: frozenset[str]) -> str:
    return _common_prefix(_safe_part(n) for n in group)


def _split(group: frozenset[str]) -> list[frozenset[str]]:
    """Partition a group by the character after its common prefix (a name ending there is its own part)."""
    p = _prefix(group)
    parts: dict[str, set[str]] = {}
    for name in group:
        safe = _safe_part(name)
        parts.setdefault(safe[len(p)] if len(safe) > len(p) else "", set()).add(name)
    return [frozenset(v) for v in parts.values()]


def _pattern(group: frozenset[str]) -> str:
    if len(group) == 1:
        (name,) = group
        if "|" not in name:
            return "^" + escape_regex(name) + "$"
    return "^" + escape_regex(_prefix(group))


def group_names(
    names: Iterable[str],
    *,
    max_queries: int = DEFAULT_MAX_QUERIES,
    min_prefix: int = DEFAULT_MIN_PREFIX,
) -> list[NameQuery]:
    """Group names into at most `max_queries` anchored prefix patterns without `|`.

    Start with one group (the longest common prefix of all names). A group whose prefix is shorter than
    `min_prefix` is too broad (it would page through unrelated servers), so it is split by the next
    character, as long as the total stays within `max_queries`; the broadest group is split first. Singleton
    groups become exact `^name$` patterns. Every name is matched (as a regex search) by its group's pattern.
    """
    if max_queries < 1:
        raise ValueError("max_queries must be at least 1")
    unique = frozenset(names)
    if not unique:
        return []
    if "" in unique:
        raise ValueError("VM names must not be empty")
    groups: list[frozenset[str]] = [unique]
    while True:
        candidates = []
        for i, g in enumerate(groups):
            plen = len(_prefix(g))
            if len(g) < 2 or plen >= min_prefix:
                continue
            parts = _split(g)
            if len(parts) < 2 or len(groups) - 1 + len(parts) > max_queries:
                continue
            candidates.append((plen, -len(g), i, parts))
        if not candidates:
            break
        _, _, index, parts = min(candidates, key=lambda c: (c[0], c[1], c[2]))
        groups = groups[:index] + groups[index + 1 :] + parts
    queries = [NameQuery(pattern=_pattern(g), names=g) for g in groups]
    return sorted(queries, key=lambda q: q.pattern)
