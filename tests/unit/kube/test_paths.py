"""The one place that builds API paths refuses any namespace or name that is not a plain Kubernetes name.

Defence in depth behind CRD validation: a name that reaches a URL unescaped could climb out of its namespace
(`..` segments are normalised away by the HTTP stack) or smuggle a query.
"""

from __future__ import annotations

import pytest

from multinic_ctrl.kube import InvalidObjectName, Resource
from multinic_ctrl.kube.client import LEASES

SECRETS = Resource("", "v1", "secrets", True, "Secret")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", False, "ClusterRole")

HOSTILE = ["..", ".", "../../kube-system/secrets/x", "a/b", "a%2F..", "x?watch=1", "x#y", " x", "x\n", "é", ".hidden"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidObjectName, match="not a valid Kubernetes name"):
        SECRETS.path("ns", name)


@pytest.mark.parametrize("namespace", HOSTILE)
def test_hostile_namespaces_are_refused(namespace: str) -> None:
    with pytest.raises(InvalidObjectName):
        SECRETS.path(namespace, "ok")
    with pytest.raises(InvalidObjectName):
        SECRETS.path(namespace)


def test_hostile_subresources_are_refused() -> None:
    with pytest.raises(InvalidObjectName):
        SECRETS.path("ns", "ok", "../../x")


@pytest.mark.parametrize(
    ("resource", "namespace", "name", "expected"),
    [
        (SECRETS, "ns", "os-creds", "/api/v1/namespaces/ns/secrets/os-creds"),
        (SECRETS, "ns", "a.b-c", "/api/v1/namespaces/ns/secrets/a.b-c"),
        (ROLES, None, "system:controller:x", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:controller:x"),
        (LEASES, "multinic-system", "multinic-controller", None),
    ],
)
def test_ordinary_names_pass(resource: Resource, namespace: str | None, name: str, expected: str | None) -> None:
    path = resource.path(namespace, name)
    assert expected is None or path == expected
    assert ".." not in path


def test_the_message_never_carries_a_huge_value() -> None:
    with pytest.raises(InvalidObjectName) as caught:
        SECRETS.path("ns", "../" * 1000)
    assert len(str(caught.value)) < 200
