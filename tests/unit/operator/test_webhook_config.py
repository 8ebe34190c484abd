"""The desired ValidatingWebhookConfiguration: scoping, exemptions, client config, drift."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from multinic_ctrl.operator.admission import GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER
from multinic_ctrl.operator.desired import MANAGED_KINDS
from multinic_ctrl.operator.webhook_config import (
    SCALE_WEBHOOK_NAME,
    WEBHOOK_NAME,
    ServiceRef,
    desired_configuration,
    drifted,
    injected_bundle,
)

OPERATOR = "system:serviceaccount:multinic-system:multinic-operator"
BUNDLE = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def build(**kw: Any) -> dict[str, Any]:
    return desired_configuration(
        ca_bundle=BUNDLE,
        client=kw.pop("client", ServiceRef("multinic-system", "multinic-operator-webhook")),
        operator_users=[OPERATOR],
        **kw,
    )


def test_main_webhook_is_tightly_scoped() -> None:
    config = build()
    assert config["metadata"]["name"] == "vprotection.multinic.example.com"
    main, scale = config["webhooks"]
    assert main["name"] == WEBHOOK_NAME == "vprotection.multinic.example.com"
    assert scale["name"] == SCALE_WEBHOOK_NAME
    for hook in (main, scale):
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["failurePolicy"] == "Fail"
        assert hook["timeoutSeconds"] == 5
        assert hook["namespaceSelector"] == {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]
        }
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == BUNDLE
        assert hook["clientConfig"]["service"] == {
            "namespace": "multinic-system",
            "name": "multinic-operator-webhook",
            "path": "/validate",
            "port": 443,
        }
    assert main["objectSelector"] == {"matchLabels": {"multinic.example.com/protected": "true"}}
    assert "objectSelector" not in scale  # a Scale has no labels


def test_rules_cover_every_managed_kind_and_scale() -> None:
    main, scale = build()["webhooks"]
    covered = {(g, r) for rule in main["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    plural = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles", "Secret": "secrets"}
    for api_version, kind, _ in MANAGED_KINDS:
        group = api_version.rpartition("/")[0]
        resource = plural.get(kind) or {
            "ClusterRoleBinding": "clusterrolebindings",
            "PersistentVolumeClaim": "persistentvolumeclaims",
        }.get(kind, kind.lower() + "s")
        assert (group, resource) in covered, kind
    assert ("", "configmaps") in covered
    assert all(rule["operations"] == ["CREATE", "UPDATE", "DELETE"] for rule in main["rules"])
    assert scale["rules"] == [
        {
            "apiGroups": ["apps"],
            "apiVersions": ["*"],
            "resources": ["deployments/scale", "statefulsets/scale"],
            "operations": ["UPDATE"],
        }
    ]


def test_match_conditions_exempt_operator_gc_and_namespace_controller() -> None:
    main, scale = build()["webhooks"]
    expression = main["matchConditions"][0]["expression"]
    for user in (OPERATOR, GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER):
        assert f"'{user}'" in expression
    assert expression.startswith("!(request.userInfo.username in [")
    assert scale["matchConditions"][0] == main["matchConditions"][0]
    assert scale["matchConditions"][1]["expression"] == (
        "(request.resource.resource == 'deployments' && request.name == 'multinic-controller') || "
        "(request.resource.resource == 'statefulsets' && request.name == 'multinic-mariadb')"
    )


def test_url_client_and_test_scoping() -> None:
    config = build(
        client="https://127.0.0.1:8443/validate",
        name="vprotection-test-abc",
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": "t-1"}},
        extra_object_labels={"test": "abc"},
    )
    main = config["webhooks"][0]
    assert main["clientConfig"]["url"] == "https://127.0.0.1:8443/validate"
    assert "service" not in main["clientConfig"]
    assert main["objectSelector"]["matchLabels"] == {"multinic.example.com/protected": "true", "test": "abc"}
    assert config["metadata"]["name"] == "vprotection-test-abc"
    with pytest.raises(ValueError, match="https"):
        build(client="http://127.0.0.1:8443/validate")


def test_quotes_in_user_names_cannot_break_the_expression() -> None:
    config = desired_configuration(ca_bundle=BUNDLE, client="https://x/validate", operator_users=["a'b"])
    assert "'a\\'b'" in config["webhooks"][0]["matchConditions"][0]["expression"]


def defaulted(config: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns: defaults added, metadata filled in."""
    live = copy.deepcopy(config)
    live["metadata"].update({"uid": "u", "resourceVersion": "7", "generation": 1})
    for hook in live["webhooks"]:
        hook.setdefault("objectSelector", {})
        for rule in hook["rules"]:
            rule["scope"] = "*"
    return live


def test_drift() -> None:
    desired = build(labels={"app.kubernetes.io/managed-by": "multinic-operator"})
    live = defaulted(desired)
    assert not drifted(live, desired)
    assert drifted(None, desired)
    edited = copy.deepcopy(live)
    edited["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(b"other").decode()
    assert drifted(edited, desired)
    assert injected_bundle(edited) is None  # the two webhooks disagree
    assert injected_bundle(live) == BUNDLE
    trimmed = copy.deepcopy(live)
    trimmed["webhooks"][0]["rules"].pop()
    assert drifted(trimmed, desired)
    relabelled = copy.deepcopy(live)
    relabelled["metadata"]["labels"] = {}
    assert drifted(relabelled, desired)
    failing_open = copy.deepcopy(live)
    failing_open["webhooks"][1]["failurePolicy"] = "Ignore"
    assert drifted(failing_open, desired)
    assert injected_bundle({"webhooks": [{"clientConfig": {}}]}) is None
