"""Database credentials: generated with an injectable RNG, stored values always win, the Secret's shape."""

from __future__ import annotations

import base64
import itertools
import secrets
from typing import Any

import pytest

from multinic_ctrl.operator import credentials
from multinic_ctrl.operator.credentials import CredentialValues, credential_values, credentials_secret, managed_keys
from multinic_ctrl.operator.names import MANAGED_BY_LABEL, PROTECTED_LABEL
from multinic_ctrl.operator.validation import SecretValue

from .support import OWNER, ROOT_PW, USER_PW, spec_of


def counting_rng() -> credentials.Rng:
    counter = itertools.count()

    def rng(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    return rng


INLINE = {"database": {"credentials": {"rootPassword": ROOT_PW, "password": USER_PW}}}
REFS = {"database": {"credentials": {"rootPasswordSecretRef": {"name": "r"}, "passwordSecretRef": {"name": "u"}}}}
STORED = {"root-password": "old-root", "password": "old-user"}
MIXED = {"database": {"credentials": {"rootPasswordSecretRef": {"name": "r"}}}}


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ({}, ("root-password", "password")),
        (INLINE, ("root-password", "password")),
        (REFS, ()),
        (MIXED, ("password",)),
        ({"database": {"enabled": False}}, ()),
    ],
)
def test_managed_keys(raw: dict[str, Any], keys: tuple[str, ...]) -> None:
    assert managed_keys(spec_of(raw)) == keys


def test_generated_passwords_use_the_injected_rng() -> None:
    values = credential_values(spec_of({}), None, counting_rng())
    assert values.generated == ("root-password", "password")
    assert values.values["root-password"].reveal() == base64.urlsafe_b64encode(b"\x00" * 32).rstrip(b"=").decode()
    assert values.values["password"].reveal() == base64.urlsafe_b64encode(b"\x01" * 32).rstrip(b"=").decode()


def test_default_rng_is_the_csprng() -> None:
    assert credential_values.__defaults__ == (secrets.token_bytes,)
    first = credential_values(spec_of({}), None).values
    second = credential_values(spec_of({}), None).values
    assert first["password"] != second["password"]
    assert len(first["password"].reveal()) == 43  # 32 bytes, URL-safe base64 without padding


@pytest.mark.parametrize(
    ("raw", "existing", "expected", "generated", "kept", "differs"),
    [
        ({}, None, None, ("root-password", "password"), (), ()),
        ({}, STORED, STORED, (), ("root-password", "password"), ()),
        ({}, {"password": "old-user"}, None, ("root-password",), ("password",), ()),
        (INLINE, None, {"root-password": ROOT_PW, "password": USER_PW}, (), (), ()),
        (INLINE, {"root-password": ROOT_PW, "password": "stored"}, {"root-password": ROOT_PW, "password": "stored"}, (),
         ("root-password", "password"), ("password",)),
        (MIXED, {"root-password": "ignored", "password": "stored"}, {"password": "stored"}, (), ("password",), ()),
        ({}, {"root-password": "", "password": "x"}, None, ("root-password",), ("password",), ()),
    ],
)  # fmt: skip
def test_stored_values_always_win(
    raw: dict[str, Any],
    existing: dict[str, str] | None,
    expected: dict[str, str] | None,
    generated: tuple[str, ...],
    kept: tuple[str, ...],
    differs: tuple[str, ...],
) -> None:
    values = credential_values(spec_of(raw), existing, counting_rng())
    if expected is not None:
        assert {k: v.reveal() for k, v in values.values.items()} == expected
    assert (values.generated, values.kept, values.differs_from_inline) == (generated, kept, differs)


def test_credential_values_repr_holds_no_secret() -> None:
    values = credential_values(spec_of(INLINE), None)
    assert ROOT_PW not in repr(values) and USER_PW not in repr(values)


@pytest.mark.parametrize("delete_data", [False, True])
def test_secret_shape(delete_data: bool) -> None:
    spec = spec_of({"database": {**INLINE["database"], "deleteDataOnUninstall": delete_data}})
    secret = credentials_secret(spec, OWNER, credential_values(spec, None))
    assert secret is not None
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "multinic-mariadb-credentials"
    assert secret["metadata"]["labels"][PROTECTED_LABEL] == "true"
    assert secret["metadata"]["labels"][MANAGED_BY_LABEL] == OWNER.name
    assert ("ownerReferences" in secret["metadata"]) is delete_data
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"root-password": ROOT_PW, "password": USER_PW}
    assert "stringData" not in secret


def test_no_secret_when_every_password_is_a_reference() -> None:
    spec = spec_of(REFS)
    assert credentials_secret(spec, OWNER, credential_values(spec, None)) is None


def test_secret_only_holds_the_managed_keys() -> None:
    spec = spec_of(MIXED)
    secret = credentials_secret(spec, OWNER, credential_values(spec, None, counting_rng()))
    assert secret is not None and set(secret["data"]) == {"password"}


def test_secret_refuses_missing_values() -> None:
    with pytest.raises(ValueError, match="root-password"):
        credentials_secret(spec_of({}), OWNER, CredentialValues({"password": SecretValue("x")}))
