"""The keyed spec hash that decides whether OpenStack must be asked again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from multinic_ctrl.controller.hashing import load_hash_key, spec_hash
from multinic_ctrl.controller.spec import ConfigSpec, parse_spec, resolve_credentials
from multinic_ctrl.openstack import Credentials

KEY = b"k" * 32
BASE: dict[str, Any] = {
    "vmNames": ["vm-1", "vm-2"],
    "subnetName": "k8s-subnet",
    "credentials": {"authURL": "http://ks:5000", "username": "admin", "password": "hunter2", "projectID": "p1"},
}


def build(**changes: Any) -> tuple[ConfigSpec, Credentials]:
    document = json.loads(json.dumps(BASE))
    creds = changes.pop("credentials", {})
    document.update(changes)
    document["credentials"].update(creds)
    spec = parse_spec(document)
    return spec, resolve_credentials(spec, {})


def digest(**changes: Any) -> str:
    spec, creds = build(**changes)
    return spec_hash(spec, creds, KEY)


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


def test_a_rotated_secret_password_changes_the_hash() -> None:
    document = json.loads(json.dumps(BASE))
    del document["credentials"]["password"]
    document["credentials"]["passwordSecretRef"] = {"name": "pw"}
    spec = parse_spec(document)
    before = spec_hash(spec, resolve_credentials(spec, {"pw": {"password": "old"}}), KEY)
    after = spec_hash(spec, resolve_credentials(spec, {"pw": {"password": "new"}}), KEY)
    assert before != after
    again = spec_hash(spec, resolve_credentials(spec, {"pw": {"password": "new"}}), KEY)
    assert after == again


def test_formatting_only_differences_keep_the_hash() -> None:
    # trimming and dropped empty fields are normalised before hashing
    assert digest(vmNames=[" vm-1 ", "vm-2"], subnetName="k8s-subnet ") == digest()
    assert digest(credentials={"region": ""}) == digest()


def test_the_hash_is_keyed() -> None:
    spec, creds = build()
    assert spec_hash(spec, creds, b"a" * 32) != spec_hash(spec, creds, b"b" * 32)
    canonical = json.dumps(
        {"vmNames": list(spec.vm_names), "subnetName": spec.subnet_name, "credentials": dataclasses.asdict(creds)},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    for variant in (canonical, json.dumps(json.loads(canonical)).encode()):
        assert spec_hash(spec, creds, KEY) != hashlib.sha256(variant).hexdigest()
    assert spec_hash(spec, creds, b"") != hashlib.sha256(canonical).hexdigest()


def test_the_hash_never_contains_the_password() -> None:
    spec, creds = build(credentials={"password": "abcdef0123456789"})
    assert "abcdef0123456789" not in spec_hash(spec, creds, KEY)


# ---------------------------------------------------------------- load_hash_key


def test_key_from_env() -> None:
    assert load_hash_key({"MULTINIC_HASH_KEY": "s3cret"}) == b"s3cret"


def test_key_from_file_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"  file-key\n")
    assert load_hash_key({"MULTINIC_HASH_KEY_FILE": str(path)}) == b"file-key"


def test_file_takes_precedence_over_env(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"from-file")
    assert load_hash_key({"MULTINIC_HASH_KEY_FILE": str(path), "MULTINIC_HASH_KEY": "from-env"}) == b"from-file"


def test_a_missing_key_file_is_an_error_not_a_silent_random_key(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_hash_key({"MULTINIC_HASH_KEY_FILE": str(tmp_path / "absent")})


@pytest.mark.parametrize("env", [{}, {"MULTINIC_HASH_KEY": ""}, {"MULTINIC_HASH_KEY_FILE": ""}])
def test_without_configuration_the_key_is_random_per_call(env: dict[str, str]) -> None:
    first, second = load_hash_key(env), load_hash_key(env)
    assert len(first) == len(second) == 32
    assert first != second


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTINIC_HASH_KEY_FILE", raising=False)
    monkeypatch.setenv("MULTINIC_HASH_KEY", "from-process-env")
    assert load_hash_key() == b"from-process-env"


def test_a_stable_key_gives_a_stable_hash_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"stable")
    spec, creds = build()
    env = {"MULTINIC_HASH_KEY_FILE": str(path)}
    assert spec_hash(spec, creds, load_hash_key(env)) == spec_hash(spec, creds, load_hash_key(env))


def test_derived_from_the_database_password_when_no_key_is_configured() -> None:
    first = load_hash_key({}, fallback_secret="db-password-1")
    assert first == load_hash_key({}, fallback_secret="db-password-1"), "stable across restarts"
    assert first != load_hash_key({}, fallback_secret="db-password-2")
    assert b"db-password-1" not in first and len(first) == 32
    assert load_hash_key({"MULTINIC_HASH_KEY": "explicit"}, fallback_secret="db-password-1") == b"explicit"
