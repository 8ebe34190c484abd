"""The spec hash that decides whether OpenStack must be asked again - and gives a database reader nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from multinic_ctrl.controller.hashing import SecretVersion, spec_hash
from multinic_ctrl.controller.spec import ConfigSpec, parse_spec, resolve_credentials
from multinic_ctrl.openstack import Credentials

UID = "6f1c2a3e-0000-4000-8000-000000000001"
BASE: dict[str, Any] = {
    "vmNames": ["vm-1", "vm-2"],
    "subnetName": "k8s-subnet",
    "credentials": {"authURL": "http://ks:5000", "username": "admin", "password": "hunter2", "projectID": "p1"},
}
PW_V1 = SecretVersion("pw", "secret-uid-1", "100")


def build(**changes: Any) -> tuple[ConfigSpec, Credentials]:
    document = json.loads(json.dumps(BASE))
    creds = changes.pop("credentials", {})
    document.update(changes)
    document["credentials"].update(creds)
    spec = parse_spec(document)
    return spec, resolve_credentials(spec, {})


def digest(**changes: Any) -> str:
    spec, creds = build(**changes)
    return spec_hash(spec, creds, config_uid=UID)


def by_secret(password: str, version: SecretVersion = PW_V1) -> str:
    document = json.loads(json.dumps(BASE))
    del document["credentials"]["password"]
    document["credentials"]["passwordSecretRef"] = {"name": "pw", "key": "password"}
    spec = parse_spec(document)
    return spec_hash(spec, resolve_credentials(spec, {"pw": {"password": password}}), config_uid=UID, secrets=[version])


def test_hash_is_deterministic_hex_sha256() -> None:
    first, second = digest(), digest()
    assert first == second
    assert len(first) == 64
    int(first, 16)


@pytest.mark.parametrize(
    "changes",
    [
        {"vmNames": ["vm-1", "vm-2", "vm-3"]},
        {"vmNames": ["vm-1"]},
        {"vmNames": ["vm-1", "vm-X"]},
        {"subnetName": "other-subnet"},
        {"credentials": {"password": "hunter3"}},
        {"credentials": {"username": "other"}},
        {"credentials": {"authURL": "http://other:5000"}},
        {"credentials": {"projectID": "p2"}},
        {"credentials": {"domainName": "Corp"}},
        {"credentials": {"networkEndpoint": "http://neutron:9696"}},
        {"credentials": {"computeEndpoint": "http://nova:8774"}},
        {"credentials": {"region": "RegionTwo"}},
    ],
    ids=lambda c: json.dumps(c, sort_keys=True),
)
def test_every_input_that_changes_the_answer_changes_the_hash(changes: dict[str, Any]) -> None:
    assert digest(**changes) != digest()


def test_a_rotated_secret_changes_the_hash_through_its_version() -> None:
    before = by_secret("old")
    after = by_secret("new", SecretVersion("pw", "secret-uid-1", "101"))
    assert before != after
    assert after == by_secret("new", SecretVersion("pw", "secret-uid-1", "101")), "stable for the same version"
    assert by_secret("new", SecretVersion("pw", "secret-uid-2", "101")) != after, "a recreated Secret counts"


def test_a_secret_password_is_not_an_input_at_all() -> None:
    """A database reader who guesses the password learns nothing: the hash is the same for any password."""
    assert by_secret("correct horse") == by_secret("battery staple")


def test_an_inline_password_cannot_be_tested_without_the_configs_uid() -> None:
    """What stands in for an inline password is keyed by the config's uid, which is not in the database."""
    spec, creds = build()
    stored = spec_hash(spec, creds, config_uid=UID)
    assert stored != spec_hash(spec, creds, config_uid="another-uid")
    # Recomputing the hash document with the right password but without the uid never matches the stored value.
    fields = {k: v for k, v in creds.__dict__.items() if k != "password"}
    for guess_key in (b"", b"hunter2", b"multinic-spec-hash-key-v1"):
        guessed = hmac.new(guess_key, b"hunter2", hashlib.sha256).hexdigest()
        document = {
            "vmNames": list(spec.vm_names),
            "subnetName": spec.subnet_name,
            "credentials": fields,
            "secrets": [],
            "inlinePassword": guessed,
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(canonical).hexdigest() != stored


def test_an_inline_password_without_a_uid_is_refused() -> None:
    spec, creds = build()
    with pytest.raises(ValueError, match="uid"):
        spec_hash(spec, creds, config_uid="")


def test_formatting_only_differences_keep_the_hash() -> None:
    # trimming and dropped empty fields are normalised before hashing
    assert digest(vmNames=[" vm-1 ", "vm-2"], subnetName="k8s-subnet ") == digest()
    assert digest(credentials={"region": ""}) == digest()


def test_secret_order_does_not_matter() -> None:
    spec, creds = build()
    a, b = SecretVersion("a", "u1", "1"), SecretVersion("b", "u2", "2")
    assert spec_hash(spec, creds, config_uid=UID, secrets=[a, b]) == spec_hash(
        spec, creds, config_uid=UID, secrets=[b, a]
    )


def test_the_hash_never_contains_the_password() -> None:
    spec, creds = build(credentials={"password": "abcdef0123456789"})
    assert "abcdef0123456789" not in spec_hash(spec, creds, config_uid=UID)
