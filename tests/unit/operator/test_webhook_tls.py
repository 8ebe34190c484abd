"""Webhook TLS material, table-tested with an injected clock: fresh, reuse, renewal, CA rotation, corruption."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from multinic_ctrl.operator.webhook_tls import (
    CA_CERT,
    CA_KEY,
    TLS_CERT,
    TLS_KEY,
    Identity,
    Lifetimes,
    bundle_certificates,
    decode_secret_data,
    plan_secret,
    secret_manifest,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFE = Lifetimes(ca=timedelta(days=300), serving=timedelta(days=30))
IDENTITY = Identity("multinic-operator-webhook", "multinic-system", ("127.0.0.1",))


def cert(data: dict[str, bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data[TLS_CERT])


def plan(data: dict[str, bytes] | None, at: datetime, identity: Identity = IDENTITY):  # type: ignore[no-untyped-def]
    return plan_secret(data, identity, at, LIFE)


def test_fresh_material_covers_the_service_names_and_loopback() -> None:
    p = plan(None, T0)
    assert p.changed and p.reasons == ("created",)
    assert set(p.data) == {CA_CERT, CA_KEY, TLS_CERT, TLS_KEY}
    serving = cert(p.data)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "multinic-operator-webhook",
        "multinic-operator-webhook.multinic-system",
        "multinic-operator-webhook.multinic-system.svc",
        "multinic-operator-webhook.multinic-system.svc.cluster.local",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    (ca,) = bundle_certificates(p.material.bundle)
    serving.verify_directly_issued_by(ca)
    assert serving.not_valid_after_utc == T0 + LIFE.serving
    # the next look is due when a third of the serving certificate's life remains
    assert (
        p.next_check == serving.not_valid_after_utc - (serving.not_valid_after_utc - serving.not_valid_before_utc) / 3
    )


def test_python_ssl_accepts_the_material(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = plan(None, datetime.now(UTC)).data
    (tmp_path / "tls.crt").write_bytes(data[TLS_CERT])
    (tmp_path / "tls.key").write_bytes(data[TLS_KEY])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cadata=data[CA_CERT].decode())
    assert client.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize("later", [timedelta(0), timedelta(days=1), timedelta(days=19)])
def test_valid_material_is_reused_byte_for_byte(later: timedelta) -> None:
    first = plan(None, T0).data
    again = plan(first, T0 + later)
    assert not again.changed and again.reasons == ()
    assert again.data == first


def test_str_values_are_accepted() -> None:
    first = plan(None, T0).data
    again = plan({k: v.decode() for k, v in first.items()}, T0 + timedelta(days=1))
    assert not again.changed


def test_serving_certificate_renewed_when_a_third_of_its_life_remains() -> None:
    first = plan(None, T0).data
    old = cert(first)
    renewal_point = old.not_valid_after_utc - (old.not_valid_after_utc - old.not_valid_before_utc) / 3
    assert not plan(first, renewal_point - timedelta(seconds=1)).changed
    renewed = plan(first, renewal_point)
    assert renewed.reasons == ("serving-renewed",)
    assert renewed.data[CA_CERT] == first[CA_CERT] and renewed.data[CA_KEY] == first[CA_KEY]
    assert renewed.data[TLS_KEY] != first[TLS_KEY]
    assert cert(renewed.data).not_valid_after_utc == renewal_point + LIFE.serving


def test_ca_rotation_keeps_the_old_ca_in_the_bundle_until_it_expires() -> None:
    data = plan(None, T0).data
    (old_ca,) = bundle_certificates(data[CA_CERT])
    rotation = old_ca.not_valid_after_utc - (old_ca.not_valid_after_utc - old_ca.not_valid_before_utc) / 3
    rotated = plan(data, rotation)
    assert rotated.reasons == ("ca-renewed", "serving-renewed")
    new_ca, kept = bundle_certificates(rotated.data[CA_CERT])
    assert kept == old_ca and new_ca != old_ca
    cert(rotated.data).verify_directly_issued_by(new_ca)
    assert rotated.next_check <= old_ca.not_valid_after_utc
    # still both until the old CA expires ...
    assert (
        len(bundle_certificates(plan(rotated.data, old_ca.not_valid_after_utc - timedelta(seconds=1)).data[CA_CERT]))
        == 2
    )
    # ... then only the new one (the serving certificate of the new CA is kept)
    pruned = plan(rotated.data, old_ca.not_valid_after_utc)
    assert "bundle-pruned" in pruned.reasons
    assert bundle_certificates(pruned.data[CA_CERT]) == [new_ca]


def test_serving_lifetime_never_exceeds_the_ca() -> None:
    short_ca = Lifetimes(ca=timedelta(days=10), serving=timedelta(days=30))
    p = plan_secret(None, IDENTITY, T0, short_ca)
    (ca,) = bundle_certificates(p.data[CA_CERT])
    assert cert(p.data).not_valid_after_utc == ca.not_valid_after_utc


def test_changed_service_name_reissues_the_serving_certificate() -> None:
    data = plan(None, T0).data
    moved = plan(data, T0 + timedelta(days=1), Identity("other-webhook", "multinic-system", ("127.0.0.1",)))
    assert moved.reasons == ("serving-renewed",)
    assert moved.data[CA_CERT] == data[CA_CERT]


def _other_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


GOOD = plan(None, T0).data
OTHER = plan(None, T0).data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "created"),
        ({**GOOD, TLS_KEY: b""}, "corrupt: tls.key missing"),
        ({k: v for k, v in GOOD.items() if k != CA_KEY}, "corrupt: ca.key missing"),
        (
            {**GOOD, TLS_CERT: b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"},
            "corrupt: unreadable",
        ),
        ({**GOOD, CA_CERT: b"not pem"}, "corrupt: unreadable"),
        ({**GOOD, TLS_KEY: _other_key_pem()}, "corrupt: tls.key does not match tls.crt"),
        ({**GOOD, CA_KEY: OTHER[CA_KEY]}, "corrupt: ca.key does not match"),
    ],
    ids=["empty", "tls.key empty", "ca.key absent", "bad cert", "bad bundle", "mismatched key", "mismatched ca key"],
)
def test_corrupt_secret_is_regenerated(data: dict[str, bytes], reason: str) -> None:
    p = plan(data, T0 + timedelta(days=1))
    assert p.changed
    assert p.reasons[0].startswith(reason)
    (ca,) = bundle_certificates(p.data[CA_CERT])
    cert(p.data).verify_directly_issued_by(ca)


def test_serving_certificate_of_a_foreign_ca_is_reissued() -> None:
    p = plan({**GOOD, TLS_CERT: OTHER[TLS_CERT], TLS_KEY: OTHER[TLS_KEY]}, T0 + timedelta(days=1))
    assert p.reasons == ("serving-renewed",)
    assert p.data[CA_CERT] == GOOD[CA_CERT]


def test_expired_ca_starts_over() -> None:
    p = plan(GOOD, T0 + timedelta(days=400))
    assert p.reasons == ("ca-expired",)


def test_injected_key_factory_is_used() -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    handed = iter(keys)
    p = plan_secret(None, IDENTITY, T0, LIFE, key_factory=lambda: next(handed))
    assert cert(p.data).public_key() == keys[1].public_key()


def test_secret_manifest_round_trip() -> None:
    manifest = secret_manifest("webhook-tls", "multinic-system", GOOD, {"a": "b"})
    assert manifest["type"] == "kubernetes.io/tls"
    decoded = decode_secret_data(manifest["data"])  # type: ignore[arg-type]
    assert decoded == GOOD
    assert decode_secret_data({"tls.crt": "***"}) == {"tls.crt": b""}


def test_short_lifetimes_renew_at_two_thirds_too() -> None:
    short = Lifetimes(ca=timedelta(days=1), serving=timedelta(seconds=6))
    data = plan_secret(None, IDENTITY, T0, short).data
    assert not plan_secret(data, IDENTITY, T0 + timedelta(seconds=3.5), short).changed
    assert plan_secret(data, IDENTITY, T0 + timedelta(seconds=4.1), short).reasons == ("serving-renewed",)
