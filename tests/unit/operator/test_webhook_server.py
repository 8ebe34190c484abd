"""The protection webhook endpoint over real HTTPS on 127.0.0.1: answers, errors, metrics, hot certificate reload,
and the denial batcher."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from cryptography import x509

from multinic_ctrl.metrics import REGISTRY
from multinic_ctrl.operator.admission import Decision, Installation, Policy
from multinic_ctrl.operator.webhook_server import (
    Batch,
    DenialBatcher,
    ProtectionWebhook,
    event_message,
    protection_status,
)
from multinic_ctrl.operator.webhook_tls import CA_CERT, TLS_CERT, TLS_KEY, Identity, Lifetimes, plan_secret
from tests.unit.operator.test_admission import OPERATOR, SECRET_VALUE, deployment, review, secret

NS = "multinic-system"
POLICY = Policy(frozenset({OPERATOR}), {NS: Installation("production-system")})
IDENTITY = Identity("multinic-operator-webhook", NS, ("127.0.0.1",))


def material(now: datetime | None = None, data: dict[str, bytes] | None = None, **life: timedelta) -> dict[str, bytes]:
    return plan_secret(data, IDENTITY, now or datetime.now(UTC), Lifetimes(**life)).data


def client_context(bundle: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=bundle.decode())


class Served:
    def __init__(self, hook: ProtectionWebhook, data: dict[str, bytes], denials: list[Decision]) -> None:
        self.hook, self.data, self.denials = hook, data, denials

    async def post(self, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
        connector = aiohttp.TCPConnector(ssl=client_context(self.data[CA_CERT]), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            payload = raw if raw is not None else json.dumps(body).encode()
            async with session.post(self.hook.url, data=payload, headers={"Content-Type": "application/json"}) as r:
                return r.status, await r.json()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    data = material()
    denials: list[Decision] = []
    hook = ProtectionWebhook(
        lambda: POLICY,
        data[TLS_CERT],
        data[TLS_KEY],
        host="127.0.0.1",
        port=0,
        on_denial=denials.append,
        batcher=DenialBatcher(interval=60),
        max_body=64 * 1024,
    )
    await hook.start()
    try:
        yield Served(hook, data, denials)
    finally:
        await hook.stop()


def counter(operation: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "multinic_operator_protection_events_total", {"operation": operation, "result": result}
    )
    return value or 0.0


async def test_denies_a_user_and_reports_it(served: Served) -> None:
    before = counter("UPDATE", "denied")
    status, answer = await served.post(review("UPDATE", deployment(3), deployment(2)))
    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"].endswith("change spec.controller.replicas there")
    assert counter("UPDATE", "denied") == before + 1
    assert [d.request.username for d in served.denials] == ["jane"]
    assert served.hook.batcher is not None and served.hook.batcher.pending


async def test_allows_the_operator(served: Served) -> None:
    before = counter("DELETE", "allowed")
    status, answer = await served.post(review("DELETE", None, deployment(), user=OPERATOR))
    assert (status, answer["response"]) == (200, {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True})
    assert counter("DELETE", "allowed") == before + 1
    assert served.denials == []


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"{not json", 400, "body is not JSON"),
        (b"[]", 400, "body is not a JSON object"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', 400, "request is missing"),
        (b"x" * (65 * 1024), 413, "body larger than 65536 bytes"),
    ],
)
async def test_json_errors(served: Served, raw: bytes, status: int, error: str) -> None:
    assert await served.post(None, raw=raw) == (status, {"error": error})


async def test_other_methods_are_refused(served: Served) -> None:
    connector = aiohttp.TCPConnector(ssl=client_context(served.data[CA_CERT]))
    async with aiohttp.ClientSession(connector=connector) as session, session.get(served.hook.url) as r:
        assert r.status == 405


async def test_a_failing_decision_denies_with_an_answer(served: Served) -> None:
    def broken() -> Policy:
        raise RuntimeError("boom")

    served.hook.policy = broken
    before = counter("UPDATE", "error")
    status, answer = await served.post(review("UPDATE", deployment(3), deployment(2)))
    assert status == 200
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert counter("UPDATE", "error") == before + 1


async def test_unknown_operation_is_a_bounded_label(served: Served) -> None:
    before = counter("other", "allowed")
    await served.post(review("SOMETHING-NEW", deployment()))
    assert counter("other", "allowed") == before + 1


async def test_no_secret_in_answers_or_logs(served: Served) -> None:
    with structlog.testing.capture_logs() as logs:
        _, answer = await served.post(
            review("UPDATE", secret(), secret(), resource="secrets", name="multinic-mariadb-credentials")
        )
    assert answer["response"]["allowed"] is False
    assert SECRET_VALUE not in json.dumps(answer) + repr(logs)
    assert any(entry["event"] == "Admission denied" for entry in logs)


async def peer_serial(served: Served, bundle: bytes) -> int:
    """Serial of the certificate a fresh connection is served (the Python client sends no SNI for an IP)."""
    _, writer = await asyncio.open_connection("127.0.0.1", served.hook.bound_port, ssl=client_context(bundle))
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


async def serve_material_from(served: Served, issued: datetime, life: Lifetimes) -> None:
    """Serve material that was issued at `issued` (in the past), as a restarted operator would find it."""
    served.data = plan_secret(None, IDENTITY, issued, life).data
    served.hook.set_certificate(served.data[TLS_CERT], served.data[TLS_KEY])


async def test_certificate_renewal_is_served_to_new_connections_without_failures(served: Served) -> None:
    await serve_material_from(served, datetime.now(UTC) - timedelta(days=250), Lifetimes())
    old_serial = x509.load_pem_x509_certificate(served.data[TLS_CERT]).serial_number
    assert await peer_serial(served, served.data[CA_CERT]) == old_serial
    renewed = plan_secret(served.data, IDENTITY, datetime.now(UTC), Lifetimes())
    assert renewed.reasons == ("serving-renewed",)

    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def hammer() -> int:
        n = 0
        while not stop.is_set():
            try:
                status, answer = await served.post(review("DELETE", None, deployment(), user=OPERATOR))
                assert status == 200 and answer["response"]["allowed"] is True
                n += 1
            except BaseException as exc:
                failures.append(exc)
        return n

    tasks = [asyncio.create_task(hammer()) for _ in range(3)]
    await asyncio.sleep(0.3)
    served.hook.set_certificate(renewed.data[TLS_CERT], renewed.data[TLS_KEY])
    await asyncio.sleep(0.3)
    stop.set()
    counts = await asyncio.gather(*tasks)
    assert failures == [] and all(counts)
    new_serial = x509.load_pem_x509_certificate(renewed.data[TLS_CERT]).serial_number
    assert new_serial != old_serial
    assert await peer_serial(served, renewed.data[CA_CERT]) == new_serial
    assert served.hook.tls.handshakes[served.hook.tls.generation] >= 1


async def test_ca_rotation_bundle_trusts_old_and_new(served: Served) -> None:
    life = Lifetimes(ca=timedelta(days=3000), serving=timedelta(days=2900))
    await serve_material_from(served, datetime.now(UTC) - timedelta(days=2500), life)
    rotated = plan_secret(served.data, IDENTITY, datetime.now(UTC), life)
    assert rotated.reasons == ("ca-renewed", "serving-renewed")
    # before the swap, a client with the rotated bundle trusts the old certificate ...
    old_serial = x509.load_pem_x509_certificate(served.data[TLS_CERT]).serial_number
    assert await peer_serial(served, rotated.data[CA_CERT]) == old_serial
    served.hook.set_certificate(rotated.data[TLS_CERT], rotated.data[TLS_KEY])
    # ... and after it, the new one
    new_serial = x509.load_pem_x509_certificate(rotated.data[TLS_CERT]).serial_number
    assert await peer_serial(served, rotated.data[CA_CERT]) == new_serial


def test_a_bad_certificate_is_refused_and_the_old_one_kept() -> None:
    data = material()
    hook = ProtectionWebhook(lambda: POLICY, data[TLS_CERT], data[TLS_KEY], port=0)
    with pytest.raises(ssl.SSLError):
        hook.set_certificate(data[TLS_CERT], material()[TLS_KEY])
    assert hook.tls.generation == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def denial(installation: tuple[str, str] | None = (NS, "production-system"), *, dry_run: bool = False) -> Decision:
    from multinic_ctrl.operator.admission import evaluate

    decision, _ = evaluate(review("UPDATE", deployment(3), deployment(2), dry_run=dry_run), POLICY)
    assert not decision.allowed
    return Decision(False, decision.reason, decision.request, decision.message, installation, decision.field_path)


AT = datetime(2026, 12, 2, 11, 0, 0, tzinfo=UTC)


def test_batcher_flushes_at_most_every_interval() -> None:
    clock = FakeClock()
    batcher = DenialBatcher(interval=10, clock=clock)
    assert batcher.flush() == {} and batcher.due_in() is None
    batcher.record(denial(), AT)
    batcher.record(denial(), AT + timedelta(seconds=1))
    assert batcher.due_in() == 0.0  # the first flush is immediate
    first = batcher.flush()
    assert first == {(NS, "production-system"): Batch(2, event_message(denial(), AT + timedelta(seconds=1)))}
    batcher.record(denial(), AT)
    clock.now += 4
    assert batcher.due_in() == 6.0
    assert batcher.flush() == {}
    assert batcher.flush(force=True)[(NS, "production-system")].prevented == 1
    batcher.record(denial(), AT)
    clock.now += 10
    assert batcher.flush()[(NS, "production-system")].prevented == 1


def test_batcher_ignores_dry_runs_allowed_and_ownerless() -> None:
    batcher = DenialBatcher(clock=FakeClock())
    batcher.record(denial(dry_run=True), AT)
    batcher.record(denial(None), AT)
    allowed = denial()
    batcher.record(Decision(True, "operator", allowed.request, installation=allowed.installation), AT)
    assert not batcher.pending


def test_batcher_restore_after_a_failed_write() -> None:
    batcher = DenialBatcher(clock=FakeClock())
    batcher.record(denial(), AT)
    lost = batcher.flush()
    batcher.record(denial(), AT + timedelta(seconds=5))
    batcher.restore(lost)
    (batch,) = batcher.flush(force=True).values()
    assert batch.prevented == 2
    assert batch.last_event.startswith("2026-12-02T11:00:05Z")


def test_event_message_and_status() -> None:
    message = event_message(denial(), AT)
    assert message == (
        "2026-12-02T11:00:00Z denied update of deployments multinic-system/multinic-controller by jane: "
        "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
        "change spec.controller.replicas there"
    )
    assert event_message(denial()) == message.removeprefix("2026-12-02T11:00:00Z ")
    previous = {"active": True, "preventedMutations": 5, "lastProtectionEvent": "old"}
    assert protection_status(previous, Batch(2, message)) == {
        "active": True,
        "preventedMutations": 7,
        "lastProtectionEvent": message,
    }
    assert protection_status(None, Batch(1, "x")) == {"preventedMutations": 1, "lastProtectionEvent": "x"}
