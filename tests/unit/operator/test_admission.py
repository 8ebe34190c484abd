"""The protection decision, table-tested: who may change a protected object, and what a denial says."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from multinic_ctrl.operator.admission import (
    GARBAGE_COLLECTOR,
    NAMESPACE_CONTROLLER,
    Installation,
    InvalidReview,
    Policy,
    evaluate,
    parse_review,
    review_response,
    service_account_user,
)
from multinic_ctrl.operator.model import ProtectionSpec

OPERATOR = service_account_user("multinic-system", "multinic-operator")
NS = "multinic-system"
POLICY = Policy(frozenset({OPERATOR}), {NS: Installation("production-system")})
SECRET_VALUE = "c3VwZXItc2VjcmV0LXJvb3QtcHc="
PROTECTED = {
    "multinic.example.com/protected": "true",
    "multinic.example.com/managed-by-operator": "production-system",
    "multinic.example.com/managed-by-operator-namespace": NS,
}


def deployment(replicas: int = 2, image: str = "multinic:v1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "multinic-controller",
            "namespace": NS,
            "labels": dict(PROTECTED if labels is None else labels),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"spec": {"containers": [{"name": "controller", "image": image}]}},
        },
        "status": {"readyReplicas": 1},
    }


def secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "multinic-mariadb-credentials", "namespace": NS, "labels": dict(PROTECTED)},
        "data": {"root-password": SECRET_VALUE},
    }


def review(
    operation: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    user: str = "jane",
    groups: tuple[str, ...] = ("system:authenticated",),
    resource: str = "deployments",
    sub: str = "",
    name: str = "multinic-controller",
    namespace: str = NS,
    options: str = "",
    dry_run: bool = False,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": resource},
        "name": name,
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": user, "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if sub:
        request["subResource"] = sub
    if options:
        request["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": options}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def scale(replicas: int) -> dict[str, Any]:
    # what the apiserver sends for deployments/scale: no labels
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "multinic-controller", "namespace": NS},
        "spec": {"replicas": replicas},
    }


def unlabelled() -> dict[str, Any]:
    return deployment(labels={"app": "mine"})


def status_changed() -> dict[str, Any]:
    new = deployment()
    new["status"] = {"readyReplicas": 2}
    new["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    new["metadata"]["resourceVersion"] = "99"
    return new


# (id, review, allowed, reason)
CASES: list[tuple[str, dict[str, Any], bool, str]] = [
    ("edit by a user", review("UPDATE", deployment(3), deployment(2)), False, "denied"),
    ("patch by a user", review("UPDATE", deployment(3), deployment(2), options="PatchOptions"), False, "denied"),
    ("delete by a user", review("DELETE", None, deployment()), False, "denied"),
    ("create by a user", review("CREATE", deployment()), False, "denied"),
    (
        "cluster admin is a user too",
        review("UPDATE", deployment(3), deployment(2), groups=("system:masters",)),
        False,
        "denied",
    ),
    (
        "dry run is judged like the real thing",
        review("UPDATE", deployment(3), deployment(2), dry_run=True),
        False,
        "denied",
    ),
    ("label removal", review("UPDATE", unlabelled(), deployment()), False, "denied"),
    ("label added to an own object", review("UPDATE", deployment(), unlabelled()), False, "denied"),
    ("operator edits", review("UPDATE", deployment(3), deployment(2), user=OPERATOR), True, "operator"),
    ("operator deletes", review("DELETE", None, deployment(), user=OPERATOR), True, "operator"),
    ("operator removes the label", review("UPDATE", unlabelled(), deployment(), user=OPERATOR), True, "operator"),
    ("garbage collector deletes", review("DELETE", None, deployment(), user=GARBAGE_COLLECTOR), True, "system"),
    ("namespace controller deletes", review("DELETE", None, deployment(), user=NAMESPACE_CONTROLLER), True, "system"),
    (
        "an operator look-alike label is no identity",
        review("UPDATE", deployment(3), deployment(2), user="system:serviceaccount:other:multinic-operator"),
        False,
        "denied",
    ),
    ("unprotected object", review("UPDATE", unlabelled(), unlabelled()), True, "unprotected"),
    ("connect is no mutation", review("CONNECT", None, None, resource="pods", sub="exec"), True, "read"),
    (
        "controller status subresource",
        review(
            "UPDATE",
            status_changed(),
            deployment(),
            sub="status",
            user="system:serviceaccount:kube-system:deployment-controller",
        ),
        True,
        "status",
    ),
    (
        "controller bookkeeping on the main resource",
        review(
            "UPDATE", status_changed(), deployment(), user="system:serviceaccount:kube-system:deployment-controller"
        ),
        True,
        "status",
    ),
    (
        "controller changing the spec is not bookkeeping",
        review("UPDATE", deployment(5), deployment(), user="system:serviceaccount:kube-system:deployment-controller"),
        False,
        "denied",
    ),
    (
        "a user writing status is denied",
        review("UPDATE", status_changed(), deployment(), sub="status"),
        False,
        "denied",
    ),
    (
        "a service account outside kube-system is no Kubernetes controller",
        review("UPDATE", status_changed(), deployment(), sub="status", user="system:serviceaccount:apps:tool"),
        False,
        "denied",
    ),
    ("kubectl scale", review("UPDATE", scale(5), scale(2), sub="scale"), False, "denied"),
    (
        "kubectl scale by the operator",
        review("UPDATE", scale(5), scale(2), sub="scale", user=OPERATOR),
        True,
        "operator",
    ),
    ("scale of another deployment", review("UPDATE", scale(5), scale(2), sub="scale", name="web"), True, "unprotected"),
    (
        "scale where no installation lives",
        review("UPDATE", scale(5), scale(2), sub="scale", namespace="elsewhere"),
        True,
        "unprotected",
    ),
]


@pytest.mark.parametrize(("review_", "allowed", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision_table(review_: dict[str, Any], allowed: bool, reason: str) -> None:
    decision, response = evaluate(review_, POLICY)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert response["response"]["allowed"] is allowed
    assert response["response"]["uid"] == review_["request"]["uid"]
    if not allowed:
        assert response["response"]["status"]["code"] == 403
        assert response["response"]["status"]["message"] == decision.message
    else:
        assert "status" not in response["response"]


@pytest.mark.parametrize(
    ("allowed_operations", "review_", "allowed"),
    [
        (("get", "list", "watch"), review("UPDATE", deployment(3), deployment(2), options="PatchOptions"), False),
        (("patch",), review("UPDATE", deployment(3), deployment(2), options="PatchOptions"), True),
        # The apiserver admits `kubectl patch` as an UPDATE with UpdateOptions: `patch` must allow it.
        (("patch",), review("UPDATE", deployment(3), deployment(2), options="UpdateOptions"), True),
        (("update",), review("UPDATE", deployment(3), deployment(2), options="PatchOptions"), True),
        (("update",), review("UPDATE", deployment(3), deployment(2), options="UpdateOptions"), True),
        (("delete",), review("DELETE", None, deployment()), True),
        (("deletecollection",), review("DELETE", None, deployment()), False),
        (("create",), review("CREATE", deployment()), True),
    ],
)
def test_allowed_operations(allowed_operations: tuple[str, ...], review_: dict[str, Any], allowed: bool) -> None:
    policy = Policy(
        frozenset({OPERATOR}), {NS: Installation("p", ProtectionSpec(allowed_operations=allowed_operations))}
    )
    decision, _ = evaluate(review_, policy)
    assert decision.allowed is allowed
    assert decision.reason == ("allowed-operation" if allowed else "denied")


def test_mutation_prevention_off_allows_everything() -> None:
    policy = Policy(frozenset(), {NS: Installation("p", ProtectionSpec(enable_mutation_prevention=False))})
    decision, _ = evaluate(review("DELETE", None, deployment()), policy)
    assert (decision.allowed, decision.reason) == (True, "protection-disabled")


def test_unknown_namespace_fails_closed_and_names_the_owner_from_labels() -> None:
    decision, _ = evaluate(review("DELETE", None, deployment(), namespace="other"), Policy(frozenset()))
    assert not decision.allowed
    assert decision.installation == ("other", "production-system")


@pytest.mark.parametrize(
    ("review_", "message"),
    [
        (
            review("UPDATE", deployment(3), deployment(2)),
            "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.controller.replicas there",
        ),
        (
            review("UPDATE", deployment(image="multinic:v2"), deployment()),
            "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.controller.image there",
        ),
        (
            review("UPDATE", deployment(3, image="multinic:v2"), deployment()),
            "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.controller there",
        ),
        (
            review("UPDATE", scale(5), scale(2), sub="scale"),
            "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.controller.replicas there",
        ),
        (
            review("DELETE", None, deployment()),
            "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.controller there (deleting the MultiNicOperator uninstalls it)",
        ),
        (
            review("UPDATE", unlabelled(), deployment()),
            "multinic-controller is managed by MultiNicOperator multinic-system/production-system; "
            "the multinic.example.com/protected label is part of the protection and cannot be removed directly",
        ),
        (
            review("UPDATE", secret(), secret(), resource="secrets", name="multinic-mariadb-credentials"),
            "multinic-mariadb-credentials is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.database.credentials there",
        ),
        (
            review(
                "DELETE", None, {"metadata": {"labels": PROTECTED}}, resource="statefulsets", name="multinic-mariadb"
            ),
            "multinic-mariadb is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.database there (deleting the MultiNicOperator uninstalls it)",
        ),
        (
            review(
                "DELETE", None, {"metadata": {"labels": PROTECTED}}, resource="cronjobs", name="multinic-mariadb-backup"
            ),
            "multinic-mariadb-backup is managed by MultiNicOperator multinic-system/production-system; "
            "change spec.database.backup there (deleting the MultiNicOperator uninstalls it)",
        ),
    ],
)
def test_denial_names_the_field_to_change(review_: dict[str, Any], message: str) -> None:
    decision, response = evaluate(review_, POLICY)
    assert decision.message == message
    assert response["response"]["status"]["message"] == message


def test_no_object_content_in_response_or_summary() -> None:
    new, old = secret(), secret()
    new["data"] = {"root-password": "bmV3LXNlY3JldA=="}
    for user in ("jane", OPERATOR):
        decision, response = evaluate(
            review("UPDATE", new, old, resource="secrets", name="multinic-mariadb-credentials", user=user), POLICY
        )
        shown = json.dumps(response) + json.dumps(decision.summary) + repr(decision)
        assert SECRET_VALUE not in shown
        assert "bmV3LXNlY3JldA==" not in shown


def test_parse_does_not_mutate_and_reads_names_from_the_object_when_absent() -> None:
    raw = review("CREATE", deployment(), name="")
    before = copy.deepcopy(raw)
    request, _, _ = parse_review(raw)
    assert raw == before
    assert request.name == "multinic-controller"
    assert request.target == "deployments multinic-system/multinic-controller"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}},
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "UPDATE"}},
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u"}},
    ],
)
def test_invalid_reviews(body: Any) -> None:
    with pytest.raises(InvalidReview):
        parse_review(body)


def test_error_response_fails_closed() -> None:
    response = review_response("u1", error="internal error")["response"]
    assert response == {
        "uid": "u1",
        "allowed": False,
        "status": {"code": 500, "reason": "InternalError", "message": "internal error"},
    }


def claim(volume: str = "", finalizers: tuple[str, ...] = ("kubernetes.io/pvc-protection",)) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}
    if volume:
        spec["volumeName"] = volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "data-multinic-mariadb-0",
            "namespace": NS,
            "labels": dict(PROTECTED),
            "finalizers": list(finalizers),
        },
        "spec": spec,
    }


KUBE = "system:serviceaccount:kube-system:"


@pytest.mark.parametrize(
    ("case", "review_", "allowed"),
    [
        (
            "statefulset controller creates a claim from its templates",
            review(
                "CREATE",
                claim(),
                user=KUBE + "statefulset-controller",
                resource="persistentvolumeclaims",
                name="data-multinic-mariadb-0",
            ),
            True,
        ),
        (
            "a user creates a labelled claim",
            review("CREATE", claim(), resource="persistentvolumeclaims", name="data-multinic-mariadb-0"),
            False,
        ),
        (
            "the volume binder binds the claim",
            review(
                "UPDATE",
                claim("pv-1"),
                claim(),
                user=KUBE + "persistent-volume-binder",
                resource="persistentvolumeclaims",
                name="data-multinic-mariadb-0",
            ),
            True,
        ),
        (
            "the binder may not resize it",
            review(
                "UPDATE",
                {**claim("pv-1"), "spec": {**claim("pv-1")["spec"], "resources": {"requests": {"storage": "1Gi"}}}},
                claim(),
                user=KUBE + "persistent-volume-binder",
                resource="persistentvolumeclaims",
                name="data-multinic-mariadb-0",
            ),
            False,
        ),
        (
            "a user binds it",
            review("UPDATE", claim("pv-1"), claim(), resource="persistentvolumeclaims", name="data-multinic-mariadb-0"),
            False,
        ),
        (
            "claim protection removes its finalizer",
            review(
                "UPDATE",
                claim(finalizers=()),
                claim(),
                user=KUBE + "pvc-protection-controller",
                resource="persistentvolumeclaims",
                name="data-multinic-mariadb-0",
            ),
            True,
        ),
        (
            "an autoscaler scales the controller",
            review(
                "UPDATE",
                {"kind": "Scale", "spec": {"replicas": 5}},
                {"kind": "Scale", "spec": {"replicas": 2}},
                user=KUBE + "horizontal-pod-autoscaler",
                sub="scale",
            ),
            True,
        ),
        (
            "a user scales it",
            review(
                "UPDATE",
                {"kind": "Scale", "spec": {"replicas": 5}},
                {"kind": "Scale", "spec": {"replicas": 2}},
                sub="scale",
            ),
            False,
        ),
        (
            "a controller may not change the spec",
            review("UPDATE", deployment(5), deployment(2), user=KUBE + "deployment-controller"),
            False,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_kubernetes_controllers_doing_their_work_pass(case: str, review_: dict[str, Any], allowed: bool) -> None:
    decision, _ = evaluate(review_, POLICY)
    assert decision.allowed is allowed, case
