"""Prefix grouping of VM names into Nova regex filters (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multinic_ctrl.openstack.names import escape_regex, group_names


def patterns(names: list[str], **kw: int) -> list[str]:
    return [q.pattern for q in group_names(names, **kw)]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], []),
        (["test-vm-1"], ["^test-vm-1$"]),
        (["test-vm-1", "test-vm-2", "test-vm-3"], ["^test-vm-"]),
        ([f"test-vm-{i}" for i in range(1, 101)], ["^test-vm-"]),
        (["test-vm-1", "test-vm-10"], ["^test-vm-1"]),
        (["web-1", "web-2", "db-1"], ["^db-1$", "^web-"]),
        (["alpha", "beta", "gamma"], ["^alpha$", "^beta$", "^gamma$"]),
        (["node.example.com", "node.example.org"], [r"^node\.example\."]),
        (["vm(1)", "vm[2]"], [r"^vm\(1\)$", r"^vm\[2\]$"]),
        (["node(1)", "node[2]"], [r"^node"]),
        (["a+b"], [r"^a\+b$"]),
        (["x|y"], ["^x"]),  # '|' is never emitted: the prefix stops before it
        (["|lead"], ["^"]),
        (["dup", "dup"], ["^dup$"]),
    ],
)
def test_group_names_table(names: list[str], expected: list[str]) -> None:
    assert patterns(names) == expected


def test_too_many_families_stay_in_one_broad_query() -> None:
    names = [f"{c}x" for c in "abcdefghij"]  # 10 families > max_queries
    assert patterns(names, max_queries=8) == ["^"]
    assert len(patterns(names, max_queries=10)) == 10


def test_short_prefix_is_split_but_long_prefix_is_not() -> None:
    assert patterns(["ab-1", "ab-2", "cd-1"], min_prefix=3) == ["^ab-", "^cd-1$"]
    assert patterns(["ab-1", "ab-2", "cd-1"], min_prefix=4) == ["^ab-1$", "^ab-2$", "^cd-1$"]
    assert patterns(["node-a", "node-b"], min_prefix=4) == ["^node-"]


def test_empty_name_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        group_names([""])


@pytest.mark.parametrize("text", ["a.b", "a*b", "(x)", "[y]", "{2}", "^$", "a\\b", "a?b+c", "a-b"])
def test_escape_is_literal(text: str) -> None:
    assert re.fullmatch(escape_regex(text), text)
    assert "\\-" not in escape_regex(text)  # undefined in POSIX ERE (old MySQL)


def mysql_like_search(pattern: str, name: str) -> bool:
    """What MySQL-backed Nova does with the filter: escape every '|' then REGEXP (search)."""
    return re.search(pattern.replace("|", "\\|"), name) is not None


names_strategy = st.lists(
    st.text(alphabet=st.sampled_from("abtest-vm.0123456789|()[]*+?^$\\{}"), min_size=1, max_size=12),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(names=names_strategy, max_queries=st.integers(min_value=1, max_value=10))
def test_every_name_is_found_by_its_pattern(names: list[str], max_queries: int) -> None:
    queries = group_names(names, max_queries=max_queries)
    assert 1 <= len(queries) <= max_queries
    covered: set[str] = set()
    for q in queries:
        assert "|" not in q.pattern
        assert q.pattern.startswith("^")
        for name in q.names:
            assert mysql_like_search(q.pattern, name), (q.pattern, name)
        assert not (covered & q.names)
        covered |= q.names
    assert covered == set(names)
