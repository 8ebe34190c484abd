"""WorkQueue.due_since / is_queued: when the key being processed was last queued (freshness for shared reads)."""

from __future__ import annotations

from multinic_ctrl.kube.workqueue import FakeClock, WorkQueue


async def test_due_since_is_the_latest_add_before_the_key_was_handed_out() -> None:
    clock = FakeClock()
    queue = WorkQueue("due", clock=clock)
    queue.add("a")
    await clock.advance(1)
    queue.add("a")  # deduplicated, but it moves the due time: what happened at 1001 must be seen too
    assert queue.is_queued("a") and not queue.is_queued("b")
    await clock.advance(1)
    assert await queue.get() == "a"
    assert queue.due_since("a") == 1001.0
    assert not queue.is_queued("a")
    await clock.advance(1)
    queue.add("a")  # while processing: queued again after done, due from now
    assert queue.is_queued("a")
    assert queue.due_since("a") == 1001.0  # the current processing is still the one of 1001
    queue.done("a")
    assert queue.due_since("a") is None
    assert await queue.get() == "a"
    assert queue.due_since("a") == 1003.0
    queue.done("a")


async def test_delayed_adds_are_due_when_they_are_promoted() -> None:
    clock = FakeClock()
    queue = WorkQueue("due-delayed", clock=clock)
    queue.add_after("a", 30)
    await clock.advance(30)
    assert await queue.get() == "a"
    assert queue.due_since("a") == 1030.0
    queue.done("a")
    await queue.shutdown(0.1)
