"""At most one re-observation of a project per interval, however many notifications it sends.

One hot-attach produces several notifications within seconds (Neutron's port update, Nova's attach end); a
VM booting with ten ports, or a script attaching to fifty VMs, produces many more. The first notification
of a project flushes at once (no added latency); any that follow within `interval` are folded into one
trailing flush at the end of it, which opens the next interval. So every notification is followed by a
flush that happens after it - no change is left unobserved - and a project is flushed at most twice per
interval. Timers exist only for projects that notified in the last interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ProjectThrottle:
    def __init__(self, interval: float, flush: Callable[[str], None]) -> None:
        self._interval = interval
        self._flush = flush
        self._open: dict[str, asyncio.TimerHandle] = {}
        self._pending: set[str] = set()

    def hit(self, project: str) -> None:
        if project in self._open:
            self._pending.add(project)
            return
        self._fire(project)

    def _fire(self, project: str) -> None:
        self._open[project] = asyncio.get_running_loop().call_later(self._interval, self._close, project)
        self._flush(project)

    def _close(self, project: str) -> None:
        del self._open[project]
        if project in self._pending:
            self._pending.discard(project)
            self._fire(project)

    def close(self) -> None:
        for handle in self._open.values():
            handle.cancel()
        self._open.clear()
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._open)
