"""Run independent requests concurrently, owned by a TaskGroup, and surface one error, not a group.

A TaskGroup cancels the siblings of a request that failed (no request outlives the lookup that wanted it), but
it reports failures as an `ExceptionGroup`; callers branch on our error types and show `str(exc)` to users, so
the group is undone here: OpenStack errors first, then cancellations, then anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from .errors import OpenStackError

T = TypeVar("T")
U = TypeVar("U")


async def gather_all(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Every result, in order; the first failure cancels the rest and is raised as itself."""
    if len(aws) == 1:
        return [await aws[0]]  # the common case needs no task
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_awaited(a)) for a in aws]
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return [t.result() for t in tasks]


async def both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Two different requests at once (see `gather_all`)."""
    try:
        async with asyncio.TaskGroup() as tg:
            a = tg.create_task(_awaited(first))
            b = tg.create_task(_awaited(second))
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return a.result(), b.result()


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """Unwrap a TaskGroup's ExceptionGroup: OpenStack errors first, then cancellations, then the rest."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, OpenStackError):
            return exc
    for exc in leaves:
        if isinstance(exc, asyncio.CancelledError):
            return exc
    return leaves[0] if leaves else group
