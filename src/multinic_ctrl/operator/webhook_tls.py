"""Self-managed TLS of the protection webhook: a private CA and a serving certificate, kept in a Secret (pure).

`plan_secret(current, ...)` answers "what should the Secret hold now" from the Secret's current data and the clock;
the caller writes it back (create-only the first time, update on renewal) and injects `Material.bundle` into the
ValidatingWebhookConfiguration. Invariants, as cert-controller and mariadb-operator keep them:

* **reuse across restarts** - valid material is returned unchanged (`Plan.changed` false): a restarted operator
  serves the certificate the apiserver already trusts;
* **renew at a third of remaining life** - the serving certificate is reissued once less than a third of its
  lifetime remains (or it no longer covers the Service's names, or is not signed by the current CA); the CA likewise,
  which is a CA rotation;
* **a CA rotation never breaks trust** - `ca.crt` is the bundle: the current CA first, then every earlier CA until
  it expires. The caller injects the bundle before it serves a certificate of the new CA, so the apiserver trusts
  both the old and the new serving certificate throughout;
* **anything unreadable is regenerated** - a Secret with missing, unparsable or mismatched keys (key not matching
  its certificate, serving cert not from the CA) yields fresh material rather than an error;
* **deterministic given the clock and the key source** - time and key generation are parameters, so the table
  tests need neither sleeping nor slow key generation.

Secret data keys: `ca.crt` (bundle, PEM), `ca.key`, `tls.crt`, `tls.key` (PEM, EC P-256, unencrypted PKCS#8).
The serving certificate covers `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local` and the
extra IP addresses asked for (127.0.0.1 for tests that reach the webhook through `clientConfig.url`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
KEYS = (CA_CERT, CA_KEY, TLS_CERT, TLS_KEY)

RENEW_FRACTION = 3  # renew once 1/RENEW_FRACTION of the lifetime remains
_BACKDATE = timedelta(minutes=5)  # tolerate an apiserver clock a little behind ours ...


def _backdate(lifetime: timedelta) -> timedelta:
    """... but never by more than a tenth of the lifetime, so short test lifetimes renew at about 2/3 too."""
    return min(_BACKDATE, lifetime / 10)


KeyFactory = Callable[[], ec.EllipticCurvePrivateKey]


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Lifetimes:
    ca: timedelta = timedelta(days=3650)
    serving: timedelta = timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """What the serving certificate must cover."""

    service: str
    namespace: str
    ip_addresses: tuple[str, ...] = ()

    @property
    def dns_names(self) -> tuple[str, ...]:
        s, n = self.service, self.namespace
        return (s, f"{s}.{n}", f"{s}.{n}.svc", f"{s}.{n}.svc.cluster.local")


@dataclass(frozen=True)
class Material:
    """The PEM contents of the Secret."""

    bundle: bytes  # ca.crt: current CA first, then earlier CAs that have not expired
    ca_key: bytes
    cert: bytes
    key: bytes

    def as_data(self) -> dict[str, bytes]:
        return {CA_CERT: self.bundle, CA_KEY: self.ca_key, TLS_CERT: self.cert, TLS_KEY: self.key}

    @property
    def serving_not_after(self) -> datetime:
        return x509.load_pem_x509_certificate(self.cert).not_valid_after_utc


@dataclass(frozen=True)
class Plan:
    material: Material
    changed: bool
    reasons: tuple[str, ...]  # why it changed: created, corrupt: ..., ca-renewed, serving-renewed, bundle-pruned
    next_check: datetime  # when the material next needs looking at (a renewal point or an old CA's expiry)

    @property
    def data(self) -> dict[str, bytes]:
        return self.material.as_data()


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_equal(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def _lifetime(cert: x509.Certificate) -> timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def renew_at(cert: x509.Certificate) -> datetime:
    """The moment a third of the certificate's life remains."""
    return cert.not_valid_after_utc - _lifetime(cert) / RENEW_FRACTION


def _issue_ca(key: ec.EllipticCurvePrivateKey, now: datetime, lifetime: timedelta, namespace: str) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "multinic-operator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"multinic-operator webhook CA {namespace} {now:%Y%m%dT%H%M%S}"),
        ]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _backdate(lifetime))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_serving(
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    identity: Identity,
    now: datetime,
    lifetime: timedelta,
) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in identity.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in identity.ip_addresses]
    not_after = min(now + lifetime, ca.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.dns_names[2])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _backdate(lifetime))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


@dataclass(frozen=True)
class _Parsed:
    cas: list[x509.Certificate]
    ca_key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _bytes(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def _parse(data: Mapping[str, bytes | str] | None) -> tuple[_Parsed | None, str]:
    """The Secret's material, or (None, why it cannot be used)."""
    if not data:
        return None, "created"
    missing = [k for k in KEYS if not _bytes(data.get(k))]
    if missing:
        return None, f"corrupt: {', '.join(missing)} missing"
    try:
        cas = x509.load_pem_x509_certificates(_bytes(data[CA_CERT]))
        cert = x509.load_pem_x509_certificate(_bytes(data[TLS_CERT]))
        ca_key = serialization.load_pem_private_key(_bytes(data[CA_KEY]), password=None)
        key = serialization.load_pem_private_key(_bytes(data[TLS_KEY]), password=None)
    except (ValueError, TypeError) as exc:
        return None, f"corrupt: unreadable PEM ({type(exc).__name__})"
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not isinstance(key, ec.EllipticCurvePrivateKey):
        return None, "corrupt: keys are not EC keys"
    if not _public_equal(ca_key, cas[0]):
        return None, "corrupt: ca.key does not match the first certificate of ca.crt"
    if not _public_equal(key, cert):
        return None, "corrupt: tls.key does not match tls.crt"
    return _Parsed(cas, ca_key, cert, key), ""


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _covers(cert: x509.Certificate, identity: Identity) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return dns == set(identity.dns_names) and ips == {str(ipaddress.ip_address(i)) for i in identity.ip_addresses}


def plan_secret(
    current: Mapping[str, bytes | str] | None,
    identity: Identity,
    now: datetime,
    lifetimes: Lifetimes = Lifetimes(),
    key_factory: KeyFactory = new_key,
) -> Plan:
    """What the webhook TLS Secret should hold at `now` (aware UTC datetime), given its current `data`.

    `current` may hold bytes or str values (already base64-decoded), or be None for a Secret that does not exist.
    """
    reasons: list[str] = []
    parsed, why = _parse(current)
    if parsed is not None and now >= parsed.cas[0].not_valid_after_utc:
        parsed, why = None, "ca-expired"
    if parsed is None:
        reasons.append(why)
        ca_key = key_factory()
        ca = _issue_ca(ca_key, now, lifetimes.ca, identity.namespace)
        older: list[x509.Certificate] = []
        cert_key = key_factory()
        cert = _issue_serving(cert_key, ca, ca_key, identity, now, lifetimes.serving)
    else:
        ca, ca_key, older = parsed.cas[0], parsed.ca_key, parsed.cas[1:]
        cert, cert_key = parsed.cert, parsed.key
        if now >= renew_at(ca):
            reasons.append("ca-renewed")
            older = [ca, *older]
            ca_key = key_factory()
            ca = _issue_ca(ca_key, now, lifetimes.ca, identity.namespace)
        current_fp = ca.fingerprint(hashes.SHA256())
        kept = [c for c in older if c.not_valid_after_utc > now and c.fingerprint(hashes.SHA256()) != current_fp]
        if len(kept) != len(older):
            reasons.append("bundle-pruned")
        older = kept
        stale = (
            now >= renew_at(cert)
            or now >= cert.not_valid_after_utc
            or not _signed_by(cert, ca)
            or not _covers(cert, identity)
        )
        if stale:
            reasons.append("serving-renewed")
            cert_key = key_factory()
            cert = _issue_serving(cert_key, ca, ca_key, identity, now, lifetimes.serving)
    material = Material(
        bundle=b"".join(_pem_cert(c) for c in (ca, *older)),
        ca_key=_pem_key(ca_key),
        cert=_pem_cert(cert),
        key=_pem_key(cert_key),
    )
    if not reasons:
        # unchanged: hand back the stored bytes exactly, so a comparison with the Secret finds no difference
        assert current is not None
        material = Material(*(_bytes(current[k]) for k in KEYS))
    moments = [renew_at(ca), renew_at(cert), *(c.not_valid_after_utc for c in older)]
    return Plan(material, bool(reasons), tuple(reasons), min(moments))


def bundle_certificates(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def secret_manifest(
    name: str, namespace: str, data: Mapping[str, bytes], labels: Mapping[str, str]
) -> dict[str, object]:
    """A core/v1 Secret (type kubernetes.io/tls) holding `data`, base64-encoded as the API expects."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    """The base64 `data` of a Secret read from the API, decoded; undecodable values become empty (regenerated)."""
    decoded: dict[str, bytes] = {}
    for k, v in (data or {}).items():
        try:
            decoded[k] = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError, TypeError):
            decoded[k] = b""
    return decoded


def ip_sans(values: Sequence[str]) -> tuple[str, ...]:
    """Validated IP addresses for `Identity.ip_addresses` (raises ValueError on a bad one)."""
    return tuple(str(ipaddress.ip_address(v)) for v in values)
