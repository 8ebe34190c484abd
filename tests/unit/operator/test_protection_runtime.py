"""The operator's protection wiring without an apiserver: webhook settings, the operator's identity, the webhook's
namespace scope, the policy built from the cached MultiNicOperators, and the configuration it applies."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from multinic_ctrl.cli import build_parser
from multinic_ctrl.operator.protection import (
    OperatorIdentity,
    ProtectionRuntime,
    namespace_selector,
    resolve_identity,
)
from multinic_ctrl.settings import OperatorSettings, SettingsError, load_settings

SA = "system:serviceaccount:multinic-system:multinic-operator"


def test_webhook_settings_defaults_in_cluster_and_locally() -> None:
    local = load_settings({}, {}).operator
    assert not local.webhook_enabled and local.webhook_port == 9443 and local.webhook_url is None
    cluster = load_settings({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAMESPACE": "ops",
                                 "SERVICE_ACCOUNT_NAME": "op"}).operator  # fmt: skip
    assert cluster.webhook_enabled and cluster.pod_namespace == "ops" and cluster.service_account == "op"
    assert cluster.webhook_service == "multinic-operator-webhook"
    assert cluster.webhook_secret == "multinic-operator-webhook-tls"
    off = load_settings({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "OPERATOR_WEBHOOK": "false"}).operator
    assert not off.webhook_enabled


def test_webhook_url_enables_and_sets_the_port() -> None:
    op = load_settings({}, {"WEBHOOK_URL": "https://127.0.0.1:18443/validate"}).operator
    assert op.webhook_enabled and op.webhook_port == 18443
    args = build_parser().parse_args(["operator", "--webhook-url", "https://127.0.0.1:1/validate",
                                      "--webhook-port", "2000", "--webhook", "true"])  # fmt: skip
    op = load_settings(vars(args), {}).operator
    assert op.webhook_enabled and op.webhook_port == 2000 and op.webhook_url == "https://127.0.0.1:1/validate"
    with pytest.raises(SettingsError, match="WEBHOOK_URL"):
        load_settings({}, {"WEBHOOK_URL": "http://127.0.0.1:1/validate"})
    with pytest.raises(SettingsError, match="WEBHOOK_PORT"):
        load_settings({}, {"WEBHOOK_PORT": "70000"})
    with pytest.raises(SettingsError, match="WEBHOOK_STATUS_INTERVAL"):
        load_settings({}, {"WEBHOOK_STATUS_INTERVAL": "0.1"})


class _NoApi:
    async def create(self, *_args: Any, **_kw: Any) -> dict[str, Any]:
        return {"status": {"userInfo": {"username": "kubernetes-admin"}}}


def _token(tmp_path: Path, sub: str) -> Path:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).decode().rstrip("=")
    path = tmp_path / "token"
    path.write_text(f"eyJhbGciOiJSUzI1NiJ9.{payload}.signature")
    return path


async def test_identity_from_settings_token_or_the_apiserver(tmp_path: Path) -> None:
    api: Any = _NoApi()
    named = await resolve_identity(api, OperatorSettings(pod_namespace="ops", service_account="op"), None)
    assert named == OperatorIdentity("system:serviceaccount:ops:op", "ops")
    from_token = await resolve_identity(api, OperatorSettings(), _token(tmp_path, SA))
    assert from_token == OperatorIdentity(SA, "multinic-system")
    asked = await resolve_identity(api, OperatorSettings(), tmp_path / "missing")
    assert asked == OperatorIdentity("kubernetes-admin", "multinic-system")


def test_namespace_selector_follows_the_operator_namespaces() -> None:
    everywhere = namespace_selector(())
    assert everywhere["matchExpressions"][0]["operator"] == "NotIn"
    scoped = namespace_selector(("b", "a"))
    assert scoped["matchExpressions"][0] == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["a", "b"],
    }
    assert scoped["matchExpressions"][1]["values"] == ["kube-system"]


def _mno(ns: str, name: str, created: str, deleting: bool = False, **protection: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": ns, "name": name, "creationTimestamp": created, "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec = (
        {"controller": {"image": "x:1"}, "protection": protection} if protection else {"controller": {"image": "x:1"}}
    )
    return {"metadata": meta, "spec": spec}


def _runtime(objs: list[dict[str, Any]], **cfg: Any) -> ProtectionRuntime:
    events: Any = object()
    kube: Any = object()
    return ProtectionRuntime(
        kube,
        OperatorSettings(webhook_enabled=True, **cfg),
        OperatorIdentity(SA, "multinic-system"),
        operators=lambda: objs,
        operator=lambda _key: None,
        events=events,
    )


def test_policy_uses_the_owning_installation_of_each_namespace() -> None:
    objs = [
        _mno("a", "younger", "2026-01-02T00:00:00Z"),
        _mno("a", "older", "2026-01-01T00:00:00Z", enableMutationPrevention=False),
        _mno("b", "leaving", "2026-01-01T00:00:00Z", deleting=True),
    ]
    runtime = _runtime(objs)
    policy = runtime.policy()
    assert policy.operator_users == frozenset({SA})
    assert policy.installations["a"].name == "older"
    assert not policy.installations["a"].protection.enable_mutation_prevention
    assert policy.installations["b"].name == "leaving"  # still judged while it uninstalls
    assert [o["metadata"]["name"] for o in runtime.live_installations()] == ["younger", "older"]


def test_configuration_points_at_the_service_or_the_url() -> None:
    in_cluster = _runtime([]).configuration(b"PEM")
    service = in_cluster["webhooks"][0]["clientConfig"]["service"]
    assert service == {"namespace": "multinic-system", "name": "multinic-operator-webhook", "path": "/validate",
                       "port": 443}  # fmt: skip
    exempt = in_cluster["webhooks"][0]["matchConditions"][0]["expression"]
    assert SA in exempt
    local = _runtime([], webhook_url="https://127.0.0.1:18443/validate", namespaces=("t",))
    config = local.configuration(b"PEM")
    assert config["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:18443/validate"
    assert config["webhooks"][1]["namespaceSelector"]["matchExpressions"][0]["values"] == ["t"]
    assert local.tls_identity.ip_addresses == ("127.0.0.1",)


class _RecordingApi:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, _resource: Any, name: str, *_args: Any, **_kw: Any) -> dict[str, Any]:
        self.deleted.append(name)
        return {}


def _with_api(objs: list[dict[str, Any]], api: Any) -> ProtectionRuntime:
    runtime = _runtime(objs)
    runtime.kube = api
    return runtime


async def test_the_last_installation_takes_the_configuration_with_it() -> None:
    api = _RecordingApi()
    leaving = _mno("a", "one", "2026-01-01T00:00:00Z", deleting=True)
    staying = _mno("b", "two", "2026-01-01T00:00:00Z")
    await _with_api([leaving, staying], api).uninstalling("a", "one")
    assert api.deleted == []  # another installation still needs it
    await _with_api([leaving], api).uninstalling("a", "one")
    assert api.deleted == ["vprotection.multinic.example.com"]
    # a finalizer run while the object is not yet marked deleted in the cache still counts it as leaving
    await _with_api([_mno("a", "one", "2026-01-01T00:00:00Z")], api).uninstalling("a", "one")
    assert api.deleted == ["vprotection.multinic.example.com"] * 2


def test_denials_become_events_on_the_installation() -> None:
    from multinic_ctrl.operator.admission import Decision, Request

    warnings: list[tuple[str, str, str]] = []

    class Events:
        def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
            warnings.append((obj["metadata"]["name"], reason, message))

    mno = _mno("a", "one", "2026-01-01T00:00:00Z")
    events: Any = Events()
    runtime = ProtectionRuntime(
        Any,  # type: ignore[arg-type]
        OperatorSettings(webhook_enabled=True),
        OperatorIdentity(SA, "multinic-system"),
        operators=lambda: [mno],
        operator=lambda key: mno if key == "a/one" else None,
        events=events,
    )
    request = Request("u", "UPDATE", "jane", (), "deployments", "", "Deployment", "a", "multinic-controller", False, "")
    runtime._on_denial(Decision(False, "denied", request, "change spec.controller there", ("a", "one")))
    dry = Request("u", "UPDATE", "jane", (), "deployments", "", "Deployment", "a", "multinic-controller", True, "")
    runtime._on_denial(Decision(False, "denied", dry, "change spec.controller there", ("a", "one")))
    assert warnings == [
        (
            "one",
            "MutationPrevented",
            "denied update of deployments a/multinic-controller by jane: change spec.controller there",
        )
    ]
