"""The small state the listener keeps: project directory, change marks, per-project throttle."""

from __future__ import annotations

import asyncio

from multinic_ctrl.notifications import ChangeHints, ProjectDirectory, ProjectThrottle


def test_directory_files_each_config_under_one_project() -> None:
    d = ProjectDirectory()
    d.record("ns/a", "p1")
    d.record("ns/b", "p1")
    d.record("ns/c", "p2")
    assert d.configs("p1") == {"ns/a", "ns/b"} and d.configs("p2") == {"ns/c"}
    d.record("ns/a", "p2")  # credentials now name another project: it moves
    assert d.configs("p1") == {"ns/b"} and d.configs("p2") == {"ns/a", "ns/c"}
    assert d.project_of("ns/a") == "p2"
    d.forget("ns/b")
    assert "p1" not in d and d.configs("p1") == frozenset()  # an emptied project takes no memory
    d.forget("ns/unknown")
    assert len(d) == 2 and d.configs("nobody") == frozenset()


def test_a_mark_is_cleared_only_by_the_reconcile_that_saw_it() -> None:
    hints = ChangeHints()
    assert hints.pending("k") is None
    hints.mark("k")
    seen = hints.pending("k")
    assert seen is not None
    hints.mark("k")  # a notification arrives while the reconcile observes
    hints.done("k", seen)
    later = hints.pending("k")
    assert later is not None and later != seen  # still marked: the next reconcile observes again
    hints.done("k", later)
    assert hints.pending("k") is None and len(hints) == 0
    hints.done("k", None)  # a reconcile that saw no mark clears nothing
    hints.mark("k")
    hints.forget("k")
    assert hints.pending("k") is None


async def test_throttle_flushes_at_once_then_folds_a_burst_into_one_trailing_flush() -> None:
    flushed: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    throttle = ProjectThrottle(0.2, lambda p: flushed.append((p, loop.time() - start)))
    throttle.hit("p1")
    throttle.hit("p2")
    assert [p for p, _ in flushed] == ["p1", "p2"]  # the first notification of a project costs no delay
    for _ in range(10):
        throttle.hit("p1")
    await asyncio.sleep(0.1)
    throttle.hit("p1")
    assert len(flushed) == 2
    await asyncio.sleep(0.15)
    assert [p for p, _ in flushed] == ["p1", "p2", "p1"]  # one trailing flush for eleven notifications
    assert flushed[2][1] >= 0.2
    await asyncio.sleep(0.25)
    assert len(flushed) == 3 and len(throttle) == 0  # quiet: nothing pending, no timer left
    throttle.hit("p1")
    assert len(flushed) == 4  # a new burst starts at once again
    throttle.close()
    assert len(throttle) == 0


async def test_every_notification_is_followed_by_a_flush_after_it() -> None:
    """No change is left unobserved: whatever the timing, the last flush comes after the last notification."""
    loop = asyncio.get_running_loop()
    flushes: list[float] = []
    throttle = ProjectThrottle(0.05, lambda _p: flushes.append(loop.time()))
    hits: list[float] = []
    for delay in (0, 0.01, 0.03, 0.07, 0.0, 0.02, 0.12, 0.01):
        await asyncio.sleep(delay)
        hits.append(loop.time())
        throttle.hit("p")
    await asyncio.sleep(0.12)
    for hit in hits:
        assert any(f >= hit for f in flushes)
    assert len(flushes) < len(hits)
    throttle.close()
