"""controller/notified.py: a notification queues the configs of its project - immediate mode only, leader only -
and their reconcile calls OpenStack although nothing else asks for it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import structlog

from multinic_ctrl.controller.notified import NotificationBridge, notified
from multinic_ctrl.controller.trigger import Decision, Mode, TriggerPolicy, decide
from multinic_ctrl.openstack import Credentials
from multinic_ctrl.settings import NotificationSettings

CAPTURED = Path(__file__).parents[1] / "notifications" / "captured"
PROJECT = "342e90953da940d88d80e6f7dafe0b60"  # owner of everything in the captured bodies
OTHER = "0" * 32
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def creds(project_id: str | None = PROJECT, project_name: str | None = None) -> Credentials:
    return Credentials("http://keystone:5000", "admin", "pw", project_id=project_id, project_name=project_name)


def unchanged(mode: Mode) -> tuple[TriggerPolicy, Decision]:
    """A config synced a minute ago, spec unchanged: every mode skips it."""
    policy = TriggerPolicy(mode=mode, resync=dt.timedelta(minutes=5))
    decision = decide(
        policy,
        spec_changed=False,
        webhook_requested=False,
        last_sync=NOW - dt.timedelta(minutes=1),
        created=NOW - dt.timedelta(hours=1),
        now=NOW,
    )
    assert not decision.call_openstack
    return policy, decision


def test_a_mark_makes_an_immediate_config_call_openstack_keeping_its_resync() -> None:
    policy, decision = unchanged(Mode.IMMEDIATE)
    result = notified(policy, decision)
    assert result == Decision(True, False, "notification", decision.next_requeue)
    assert result.next_requeue == dt.timedelta(minutes=4)  # the resync stays where it was


@pytest.mark.parametrize("mode", [Mode.MANUAL, Mode.WEBHOOK, Mode.SCHEDULED])
def test_a_mark_changes_nothing_in_other_modes(mode: Mode) -> None:
    policy, decision = unchanged(mode)
    assert notified(policy, decision) is decision


def test_a_decision_that_calls_openstack_anyway_keeps_its_reason() -> None:
    policy = TriggerPolicy()
    decision = Decision(True, True, "cr-change", dt.timedelta(minutes=5))
    assert notified(policy, decision) is decision


class Harness:
    def __init__(self, mode: Mode = Mode.IMMEDIATE, leading: bool = True) -> None:
        self.mode = mode
        self.leading = leading
        self.existing: set[str] = set()
        self.queued: list[str] = []
        self.tokens: dict[str, str] = {}  # credentials cache key -> the token's project
        self.bridge = NotificationBridge(
            NotificationSettings(url="amqp://u:p@127.0.0.1:5672/", min_interval=0.0),
            exists=lambda key: key in self.existing,
            enqueue=self.queued.append,
            mode=lambda: self.mode,
            leading=lambda: self.leading,
            token_project=lambda c: self.tokens.get(c.cache_key()),
        )

    def config(self, key: str, credentials: Credentials) -> int | None:
        self.existing.add(key)
        return self.bridge.seen(key, credentials)

    def deliver(self, name: str) -> str:
        return self.bridge.handler((CAPTURED / f"{name}.json").read_bytes(), "neutron")


async def test_an_attach_queues_and_marks_every_config_of_the_project() -> None:
    h = Harness()
    assert h.config("ns/a", creds()) is None
    assert h.config("ns/b", creds()) is None
    assert h.config("ns/other", creds(OTHER)) is None
    with structlog.testing.capture_logs() as logs:
        assert h.deliver("neutron-port.update.end-attach") == "relevant"
    assert sorted(h.queued) == ["ns/a", "ns/b"]
    (line,) = [e for e in logs if e["event"] == "Configs queued after an OpenStack notification"]
    assert (line["project"], line["events"], line["configs"]) == (PROJECT, ["port.update.end"], 2)
    mark = h.bridge.seen("ns/a", creds())
    assert mark is not None and h.bridge.seen("ns/other", creds(OTHER)) is None
    h.bridge.synced("ns/a", creds(), mark)
    assert h.bridge.seen("ns/a", creds()) is None  # answered
    assert h.bridge.seen("ns/b", creds()) is not None  # not yet
    h.bridge._throttle.close()


async def test_irrelevant_or_foreign_notifications_queue_nothing() -> None:
    h = Harness()
    h.config("ns/a", creds(OTHER))
    for name in ("neutron-port.create.end", "neutron-port.update.start", "neutron-port.update.end-attach"):
        h.deliver(name)
    assert h.queued == []  # unbound port, a .start, another project
    assert len(h.bridge._throttle) == 0  # a project without configs does not even start a timer


@pytest.mark.parametrize("mode", [Mode.MANUAL, Mode.WEBHOOK, Mode.SCHEDULED])
async def test_other_modes_get_nothing_from_a_notification(mode: Mode) -> None:
    h = Harness(mode=mode)
    h.config("ns/a", creds())
    h.deliver("nova-instance.interface_attach.end")
    assert h.queued == [] and h.bridge.seen("ns/a", creds()) is None
    h.bridge._throttle.close()


async def test_a_standby_queues_nothing() -> None:
    h = Harness(leading=False)
    h.config("ns/a", creds())
    h.deliver("neutron-port.delete.end")
    assert h.queued == [] and h.bridge.seen("ns/a", creds()) is None
    h.bridge._throttle.close()


async def test_deleted_configs_are_forgotten_and_never_queued() -> None:
    h = Harness()
    h.config("ns/a", creds())
    h.config("ns/b", creds())
    h.existing.discard("ns/b")  # gone from the cache, delete event not handled yet
    h.bridge.forget("ns/a")
    h.deliver("neutron-port.update.end-detach")
    assert h.queued == []
    h.bridge._throttle.close()


async def test_the_tokens_project_wins_and_a_project_named_by_name_is_filed_once_a_token_exists() -> None:
    h = Harness()
    by_name = creds(project_id=None, project_name="admin")
    assert h.config("ns/a", by_name) is None
    h.deliver("neutron-port.delete.end")
    assert h.queued == []  # no token yet: its project is unknown
    h.tokens[by_name.cache_key()] = PROJECT
    h.bridge.synced("ns/a", by_name, None)  # after its first observation
    h.bridge._throttle.close()
    h.deliver("neutron-port.delete.end")
    assert h.queued == ["ns/a"]
    h.bridge._throttle.close()


async def test_the_captured_bodies_end_to_end_through_the_bridge() -> None:
    """Every captured relevant body queues the project's config; the others do not."""
    expected = {
        "neutron-port.create.end-on-device",
        "neutron-port.update.end-attach",
        "neutron-port.update.end-detach",
        "neutron-port.delete.end",
        "nova-instance.interface_attach.end",
        "nova-instance.interface_detach.end",
    }
    for path in sorted(CAPTURED.glob("*.json")):
        h = Harness()
        h.config("ns/a", creds())
        h.deliver(path.stem)
        assert (h.queued == ["ns/a"]) is (path.stem in expected), path.stem
        h.bridge._throttle.close()
    assert json.loads((CAPTURED / "neutron-port.delete.end.json").read_text())["oslo.version"] == "2.0"
