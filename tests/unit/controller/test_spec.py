"""OpenstackConfig spec parsing and credential resolution."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from multinic_ctrl.controller.spec import (
    MAX_VMS,
    ConfigSpec,
    CredentialsError,
    SecretKeyRef,
    SpecError,
    parse_spec,
    resolve_credentials,
)
from multinic_ctrl.openstack import Credentials

INLINE_PASSWORD = "inline-pw-Zq81"
SECRET_PASSWORD = "secret-pw-Kx42"
WHOLE_PASSWORD = "whole-pw-Lm07"

MISSION_EXAMPLE: dict[str, Any] = {
    "vmNames": ["test-vm-1", "test-vm-2", "test-vm-3"],
    "subnetName": "k8s-subnet",
    "credentials": {
        "authURL": "http://110.0.0.100:5000",
        "username": "admin",
        "password": INLINE_PASSWORD,
        "projectID": "your-project-id",
        "domainName": "Default",
        "networkEndpoint": "http://110.0.0.100:9696",
        "computeEndpoint": "http://110.0.0.100:8774",
    },
}


def spec_with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MISSION_EXAMPLE)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def creds_with(**changes: Any) -> dict[str, Any]:
    creds: dict[str, Any] = copy.deepcopy(MISSION_EXAMPLE["credentials"])
    for key, value in changes.items():
        if value is None:
            creds.pop(key, None)
        else:
            creds[key] = value
    return creds


# ---------------------------------------------------------------- parse_spec


def test_parse_the_mission_example() -> None:
    spec = parse_spec(MISSION_EXAMPLE)
    assert spec.vm_names == ("test-vm-1", "test-vm-2", "test-vm-3")
    assert spec.subnet_name == "k8s-subnet"
    assert dict(spec.credentials) == MISSION_EXAMPLE["credentials"]
    assert spec.password_ref is None
    assert spec.credentials_secret is None
    assert spec.secret_names() == frozenset()


def test_names_are_trimmed_and_order_kept() -> None:
    spec = parse_spec(spec_with(vmNames=["  b ", "a", "c  "], subnetName=" net "))
    assert spec.vm_names == ("b", "a", "c")
    assert spec.subnet_name == "net"


def test_empty_and_null_credential_fields_are_dropped() -> None:
    spec = parse_spec(spec_with(credentials=creds_with(projectID="", region=None, computeEndpoint="")))
    assert "projectID" not in spec.credentials
    assert "region" not in spec.credentials
    assert "computeEndpoint" not in spec.credentials


def test_unknown_credential_fields_are_ignored() -> None:
    spec = parse_spec(spec_with(credentials=creds_with(token="ignored", extra={"a": 1})))
    assert "token" not in spec.credentials
    assert "extra" not in spec.credentials


def test_password_secret_ref() -> None:
    spec = parse_spec(
        spec_with(credentials=creds_with(password=None, passwordSecretRef={"name": "os-pw", "key": "pw"}))
    )
    assert spec.password_ref == SecretKeyRef("os-pw", "pw")
    assert "password" not in spec.credentials
    assert spec.secret_names() == frozenset({"os-pw"})


def test_password_secret_ref_key_defaults_to_password() -> None:
    spec = parse_spec(spec_with(credentials=creds_with(password=None, passwordSecretRef={"name": "os-pw"})))
    assert spec.password_ref == SecretKeyRef("os-pw", "password")


def test_whole_credentials_secret_needs_no_inline_fields() -> None:
    spec = parse_spec({"vmNames": ["vm"], "subnetName": "net", "credentialsSecretRef": {"name": "os-creds"}})
    assert spec.credentials_secret == "os-creds"
    assert dict(spec.credentials) == {}
    assert spec.secret_names() == frozenset({"os-creds"})


def test_both_secret_kinds_are_named() -> None:
    spec = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "net",
            "credentials": {"passwordSecretRef": {"name": "pw"}},
            "credentialsSecretRef": {"name": "whole"},
        }
    )
    assert spec.secret_names() == frozenset({"pw", "whole"})


def test_exactly_max_vms_is_accepted() -> None:
    spec = parse_spec(spec_with(vmNames=[f"vm-{i}" for i in range(MAX_VMS)]))
    assert len(spec.vm_names) == MAX_VMS == 1000


def test_repr_never_shows_the_password() -> None:
    spec = parse_spec(MISSION_EXAMPLE)
    assert INLINE_PASSWORD not in repr(spec)
    assert INLINE_PASSWORD not in str(spec)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (None, "spec is missing"),
        ([], "spec is missing"),
        ("spec", "spec is missing"),
        (spec_with(vmNames=None), "spec.vmNames must list at least one VM name"),
        (spec_with(vmNames=[]), "spec.vmNames must list at least one VM name"),
        (spec_with(vmNames="test-vm-1"), "spec.vmNames must list at least one VM name"),
        (spec_with(vmNames=[f"vm-{i}" for i in range(MAX_VMS + 1)]), "lists 1001 VMs; at most 1000"),
        (spec_with(vmNames=["a", "b", "a"]), "spec.vmNames lists 'a' twice"),
        (spec_with(vmNames=["a", " a "]), "spec.vmNames lists 'a' twice"),
        (spec_with(vmNames=["a", ""]), "spec.vmNames[1] is required"),
        (spec_with(vmNames=["a", None]), "spec.vmNames[1] is required"),
        (spec_with(vmNames=["a", 5]), "spec.vmNames[1] must be a string"),
        (spec_with(subnetName=None), "spec.subnetName is required"),
        (spec_with(subnetName=""), "spec.subnetName is required"),
        (spec_with(subnetName=42), "spec.subnetName must be a string"),
        (spec_with(credentials="admin:admin"), "spec.credentials must be an object"),
        (spec_with(credentials=creds_with(username=7)), "spec.credentials.username must be a string"),
        (spec_with(credentials=creds_with(authURL=None)), "spec.credentials.authURL is required"),
        (spec_with(credentials=creds_with(username="")), "spec.credentials.username is required"),
        (spec_with(credentials=creds_with(password=None)), "a password is required"),
        (spec_with(credentials=None), "spec.credentials.authURL is required"),
        (
            spec_with(credentials=creds_with(passwordSecretRef={"name": "pw"})),
            "either spec.credentials.password or spec.credentials.passwordSecretRef, not both",
        ),
        (
            spec_with(credentials=creds_with(password=None, passwordSecretRef="pw")),
            "passwordSecretRef must be an object",
        ),
        (
            spec_with(credentials=creds_with(password=None, passwordSecretRef={"key": "pw"})),
            "spec.credentials.passwordSecretRef.name is required",
        ),
        (spec_with(credentialsSecretRef="os-creds"), "spec.credentialsSecretRef must be an object"),
        (spec_with(credentialsSecretRef={"key": "x"}), "spec.credentialsSecretRef.name is required"),
    ],
)
def test_parse_spec_errors(document: Any, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(document)
    assert fragment in str(info.value)


def test_inline_password_and_ref_conflict_even_with_a_whole_secret() -> None:
    document = spec_with(credentials=creds_with(passwordSecretRef={"name": "pw"}), credentialsSecretRef={"name": "c"})
    with pytest.raises(SpecError, match="not both"):
        parse_spec(document)


@pytest.mark.parametrize("bad", [{"password": 12345}, {"password": ["x"]}])
def test_type_errors_never_echo_the_value(bad: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(credentials=creds_with(**bad)))
    assert "12345" not in str(info.value)
    assert "spec.credentials.password must be a string" in str(info.value)


# ---------------------------------------------------------------- resolve_credentials


def test_inline_credentials() -> None:
    creds = resolve_credentials(parse_spec(MISSION_EXAMPLE), {})
    assert creds == Credentials(
        auth_url="http://110.0.0.100:5000",
        username="admin",
        password=INLINE_PASSWORD,
        user_domain_name="Default",
        project_id="your-project-id",
        network_endpoint="http://110.0.0.100:9696",
        compute_endpoint="http://110.0.0.100:8774",
    )
    assert INLINE_PASSWORD not in repr(creds)


def test_password_from_password_secret_ref() -> None:
    spec = parse_spec(spec_with(credentials=creds_with(password=None, passwordSecretRef={"name": "pw", "key": "k"})))
    creds = resolve_credentials(spec, {"pw": {"k": SECRET_PASSWORD, "other": "x"}})
    assert creds.password == SECRET_PASSWORD
    assert creds.username == "admin"


def test_whole_secret_supplies_every_field() -> None:
    spec = parse_spec({"vmNames": ["vm"], "subnetName": "net", "credentialsSecretRef": {"name": "c"}})
    secret = {
        "authURL": "http://keystone:5000/v3",
        "username": "svc",
        "password": WHOLE_PASSWORD,
        "projectName": "demo",
        "projectDomainName": "ProjDom",
        "domainName": "UserDom",
        "region": "RegionTwo",
        "interface": "internal",
        "networkEndpoint": "http://neutron:9696",
        "computeEndpoint": "http://nova:8774",
        "unrelated": "ignored",
    }
    creds = resolve_credentials(spec, {"c": secret})
    assert creds == Credentials(
        auth_url="http://keystone:5000/v3",
        username="svc",
        password=WHOLE_PASSWORD,
        user_domain_name="UserDom",
        project_name="demo",
        project_domain_name="ProjDom",
        network_endpoint="http://neutron:9696",
        compute_endpoint="http://nova:8774",
        region="RegionTwo",
        interface="internal",
    )


def test_inline_fields_take_precedence_over_the_whole_secret() -> None:
    spec = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "net",
            "credentials": {"username": "inline-user", "password": INLINE_PASSWORD},
            "credentialsSecretRef": {"name": "c"},
        }
    )
    creds = resolve_credentials(
        spec, {"c": {"authURL": "http://ks:5000", "username": "secret-user", "password": WHOLE_PASSWORD}}
    )
    assert (creds.auth_url, creds.username, creds.password) == ("http://ks:5000", "inline-user", INLINE_PASSWORD)


def test_password_secret_ref_wins_over_the_whole_secret_password() -> None:
    spec = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "net",
            "credentials": {"passwordSecretRef": {"name": "pw"}},
            "credentialsSecretRef": {"name": "c"},
        }
    )
    creds = resolve_credentials(
        spec,
        {
            "c": {"authURL": "http://ks:5000", "username": "u", "password": WHOLE_PASSWORD},
            "pw": {"password": SECRET_PASSWORD},
        },
    )
    assert creds.password == SECRET_PASSWORD


def test_empty_inline_field_falls_back_to_the_whole_secret() -> None:
    spec = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "net",
            "credentials": {"username": "", "authURL": ""},
            "credentialsSecretRef": {"name": "c"},
        }
    )
    creds = resolve_credentials(spec, {"c": {"authURL": "http://ks", "username": "u", "password": "p"}})
    assert (creds.auth_url, creds.username) == ("http://ks", "u")


@pytest.mark.parametrize(
    ("credentials", "project_domain"),
    [
        ({"domainName": "Corp"}, "Corp"),  # project scope by name: domainName defaults the project domain
        ({"domainName": "Corp", "projectName": "p"}, "Corp"),
        ({"domainName": "Corp", "projectDomainName": "Other"}, "Other"),
        ({"domainName": "Corp", "projectID": "abc"}, None),  # a project ID needs no domain
        ({}, None),
    ],
)
def test_domain_name_defaults_the_project_domain(credentials: dict[str, str], project_domain: str | None) -> None:
    base = {"authURL": "http://ks:5000", "username": "u", "password": "p"}
    spec = parse_spec({"vmNames": ["vm"], "subnetName": "net", "credentials": {**base, **credentials}})
    creds = resolve_credentials(spec, {})
    assert creds.project_domain_name == project_domain
    assert creds.user_domain_name == credentials.get("domainName", "Default")


def test_defaults_when_optional_fields_absent() -> None:
    spec = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "net",
            "credentials": {"authURL": "http://ks", "username": "u", "password": "p"},
        }
    )
    creds = resolve_credentials(spec, {})
    assert creds.user_domain_name == "Default"
    assert creds.interface == "public"
    assert (creds.project_id, creds.project_name, creds.network_endpoint, creds.compute_endpoint) == (
        None,
        None,
        None,
        None,
    )


ALL_SECRET_VALUES = [INLINE_PASSWORD, SECRET_PASSWORD, WHOLE_PASSWORD, "stray-value-9931"]


@pytest.mark.parametrize(
    ("spec_doc", "secrets", "fragment"),
    [
        (
            spec_with(credentials=creds_with(password=None, passwordSecretRef={"name": "pw", "key": "k"})),
            {"other": {"k": SECRET_PASSWORD}},
            "Secret 'pw' (passwordSecretRef) not found",
        ),
        (
            spec_with(credentials=creds_with(password=None, passwordSecretRef={"name": "pw", "key": "k"})),
            {"pw": {"password": SECRET_PASSWORD, "stray": "stray-value-9931"}},
            "Secret 'pw' has no key 'k'",
        ),
        (
            {"vmNames": ["v"], "subnetName": "n", "credentialsSecretRef": {"name": "c"}},
            {"pw": {"password": SECRET_PASSWORD}},
            "Secret 'c' (spec.credentialsSecretRef) not found",
        ),
        (
            {"vmNames": ["v"], "subnetName": "n", "credentialsSecretRef": {"name": "c"}},
            {"c": {"authURL": "http://ks", "username": "u", "pass": WHOLE_PASSWORD}},
            "credentials lack 'password' in Secret 'c'",
        ),
        (
            {"vmNames": ["v"], "subnetName": "n", "credentialsSecretRef": {"name": "c"}},
            {"c": {"authURL": "http://ks", "password": WHOLE_PASSWORD}},
            "credentials lack 'username' in Secret 'c'",
        ),
        (
            {"vmNames": ["v"], "subnetName": "n", "credentialsSecretRef": {"name": "c"}},
            {"c": {"username": "u", "password": WHOLE_PASSWORD}},
            "credentials lack 'authURL' in Secret 'c'",
        ),
        (
            {"vmNames": ["v"], "subnetName": "n", "credentialsSecretRef": {"name": "c"}},
            {"c": {"authURL": "http://ks", "username": "u", "password": ""}},
            "credentials lack 'password' in Secret 'c'",
        ),
        (
            spec_with(credentials=creds_with(password=None, passwordSecretRef={"name": "pw"})),
            {"pw": {"password": ""}},
            "credentials lack 'password'",
        ),
    ],
)
def test_credential_errors_name_the_secret_but_never_a_value(
    spec_doc: dict[str, Any], secrets: dict[str, dict[str, str]], fragment: str
) -> None:
    spec = parse_spec(spec_doc)
    with pytest.raises(CredentialsError) as info:
        resolve_credentials(spec, secrets)
    message = str(info.value)
    assert fragment in message
    for value in ALL_SECRET_VALUES:
        assert value not in message
        assert value not in repr(info.value)


def test_resolve_accepts_a_hand_built_spec() -> None:
    spec = ConfigSpec(("vm",), "net", {"authURL": "http://ks", "username": "u"}, SecretKeyRef("s", "password"))
    assert resolve_credentials(spec, {"s": {"password": "p"}}).password == "p"


def test_error_classes_are_value_errors() -> None:
    assert issubclass(SpecError, ValueError)
    assert issubclass(CredentialsError, ValueError)
    assert not issubclass(CredentialsError, SpecError)


# ---------------------------------------------------------------- Secret references stay in their namespace
ESCAPES = [
    "../../kube-system/secrets/admin-token",
    "..",
    ".",
    "a/b",
    "a%2Fb",
    "x?watch=true",
    "x#frag",
    "Upper",
    "with space",
    "-leading-dash",
    "a" * 254,
    "é",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_password_secret_ref_name_must_be_a_secret_name(name: str) -> None:
    spec = copy.deepcopy(MISSION_EXAMPLE)
    del spec["credentials"]["password"]
    spec["credentials"]["passwordSecretRef"] = {"name": name, "key": "password"}
    with pytest.raises(SpecError, match=r"spec\.credentials\.passwordSecretRef\.name .* is not a valid Secret name"):
        parse_spec(spec)


@pytest.mark.parametrize("name", ESCAPES)
def test_credentials_secret_ref_name_must_be_a_secret_name(name: str) -> None:
    spec = {"vmNames": ["vm"], "subnetName": "s", "credentialsSecretRef": {"name": name}}
    with pytest.raises(SpecError, match=r"spec\.credentialsSecretRef\.name .* is not a valid Secret name"):
        parse_spec(spec)


@pytest.mark.parametrize("key", ["..", ".", "a/b", "pass word", "k" * 254])
def test_password_secret_ref_key_must_be_a_secret_key(key: str) -> None:
    spec = copy.deepcopy(MISSION_EXAMPLE)
    del spec["credentials"]["password"]
    spec["credentials"]["passwordSecretRef"] = {"name": "ok", "key": key}
    with pytest.raises(SpecError, match="is not a valid Secret key"):
        parse_spec(spec)


def test_long_hostile_names_are_cut_in_the_message() -> None:
    spec = {"vmNames": ["vm"], "subnetName": "s", "credentialsSecretRef": {"name": "../" * 500}}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert len(str(caught.value)) < 250


@pytest.mark.parametrize("name", ["os-creds", "a", "creds.v2", "a-b.c-d", "x" * 253])
def test_valid_secret_names_pass(name: str) -> None:
    spec = {"vmNames": ["vm"], "subnetName": "s", "credentialsSecretRef": {"name": name}}
    assert parse_spec(spec).credentials_secret == name


# ---------------------------------------------------------------- Secrets with binary values
def test_binary_values_under_other_keys_do_not_matter() -> None:
    from multinic_ctrl.controller.spec import decode_secret

    data = decode_secret({"data": {"password": "c2VjcmV0", "tls.key": "//79/A=="}})
    assert data == {"password": "secret"} and data.unreadable == frozenset({"tls.key"})
    spec = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "s",
            "credentials": {"authURL": "https://ks", "username": "u", "passwordSecretRef": {"name": "pw"}},
        }
    )
    assert resolve_credentials(spec, {"pw": data}).password == "secret"


def test_a_binary_value_we_need_is_reported_as_not_text() -> None:
    from multinic_ctrl.controller.spec import decode_secret

    data = decode_secret({"data": {"password": "//79/A==", "region": "//79"}})
    ref = parse_spec(
        {
            "vmNames": ["vm"],
            "subnetName": "s",
            "credentials": {"authURL": "https://ks", "username": "u", "passwordSecretRef": {"name": "pw"}},
        }
    )
    with pytest.raises(CredentialsError, match="Secret 'pw' key 'password' is not text"):
        resolve_credentials(ref, {"pw": data})
    whole = parse_spec({"vmNames": ["vm"], "subnetName": "s", "credentialsSecretRef": {"name": "all"}})
    with pytest.raises(CredentialsError, match="Secret 'all' key 'region' is not text"):
        resolve_credentials(whole, {"all": data})
