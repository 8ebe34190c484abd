"""The controller works with exactly the permissions manifests/rbac grants - and no more.

Two identities are proven, each by running the controller in-process as its ServiceAccount on the real apiserver:
`controller.yaml` (cluster-wide) and the `namespaced/` kustomize overlay (Secrets and Events granted only in the
namespaces of WATCH_NAMESPACES). The run drives every path that needs a permission, the rare ones included: the
Lease is created (only when none exists), renewed and released; a config is read back with GET (only after its
finalizer patch met a 409 Conflict, provoked here by a concurrent edit); an Event is patched (only when it
repeats, provoked by rotating the credentials Secret to a wrong password and back, twice); a webhook trigger is
recorded on the config and acknowledged in its status; the config is deleted and its finalizer removed. Then the
apiserver's audit log is compared with the manifest: every granted (scope, apiGroup, resource, verb) was used by
the ServiceAccount at least once, every request it made is covered by a grant, and none was denied.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from multinic_ctrl.controller.triggers import HANDLED_FIELD
from multinic_ctrl.kube.client import KubeClient
from tests.e2e.harness import GROUP, VERSION, Env, config_body, wait_for
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

RBAC_DIR = Path(__file__).resolve().parents[2] / "manifests" / "rbac"
CLUSTER_WIDE = RBAC_DIR / "controller.yaml"
NAMESPACED = RBAC_DIR / "namespaced"
#: Namespaces as the manifests ship them; tests move them to their own namespaces.
MANIFEST_NAMESPACE = "multinic-system"
EXAMPLE_WATCHED_NAMESPACE = "team-a"
SA_NAME = "multinic-controller"
LEASE_NAME = "multinic-controller"
CLUSTER = "(cluster)"


# ------------------------------------------------------------------------------------------------ manifests
def load(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def relocate(docs: Iterable[Mapping[str, Any]], moves: Mapping[str, str]) -> list[dict[str, Any]]:
    """The objects with their namespaces (and those of ServiceAccount subjects) renamed per `moves`."""
    moved = []
    for doc in yaml.safe_load(yaml.safe_dump(list(docs))):
        meta = doc.get("metadata") or {}
        if meta.get("namespace") in moves:
            meta["namespace"] = moves[meta["namespace"]]
        for subject in doc.get("subjects") or []:
            if subject.get("namespace") in moves:
                subject["namespace"] = moves[subject["namespace"]]
        moved.append(doc)
    return moved


def build_namespaced(cp: ControlPlane) -> list[dict[str, Any]]:
    return load(cp.kubectl("kustomize", str(NAMESPACED)).stdout)


@dataclass(frozen=True, order=True)
class Grant:
    scope: str  # CLUSTER or the namespace of the RoleBinding
    group: str
    resource: str  # "plural" or "plural/subresource"
    verb: str
    names: tuple[str, ...] = ()  # resourceNames; empty: any

    def covers(self, request: Request) -> bool:
        return (
            (self.scope == CLUSTER or self.scope == request.namespace)
            and (self.group, self.resource, self.verb) == (request.group, request.resource, request.verb)
            and (not self.names or request.name in self.names)
        )


def grants_of(docs: list[dict[str, Any]], sa_namespace: str, sa_name: str = SA_NAME) -> list[Grant]:
    """What RBAC grants the ServiceAccount through the (Cluster)RoleBindings in `docs`, rule by rule."""
    by_name = {(d["kind"], d["metadata"].get("namespace") or "", d["metadata"]["name"]): d for d in docs}
    grants: set[Grant] = set()
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}
        if not any({k: s.get(k) for k in subject} == subject for s in binding.get("subjects") or []):
            continue
        scope = binding["metadata"]["namespace"] if binding["kind"] == "RoleBinding" else CLUSTER
        ref = binding["roleRef"]
        role_ns = binding["metadata"]["namespace"] if ref["kind"] == "Role" else ""
        role = by_name.get((ref["kind"], role_ns, ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']} refers to a missing {ref}"
        for rule in role.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in (rule.get(field) or []), f"wildcard {field} in {ref['name']}: {rule}"
            assert not rule.get("nonResourceURLs"), f"nonResourceURLs in {ref['name']}: {rule}"
            names = tuple(sorted(rule.get("resourceNames") or []))
            grants |= {
                Grant(scope, group, resource, verb, names)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return sorted(grants)


# ------------------------------------------------------------------------------------------------ audit log
@dataclass(frozen=True)
class Request:
    namespace: str
    group: str
    resource: str
    verb: str
    name: str
    code: int
    decision: str

    @property
    def denied(self) -> bool:
        return self.code == 403 or self.decision == "forbid"


def requests_by(cp: ControlPlane, username: str) -> list[Request]:
    """The resource requests `username` made (one per audit ID: a watch logs ResponseStarted and -Complete)."""
    latest: dict[str, dict[str, Any]] = {}
    for event in cp.audit_events():
        if (event.get("user") or {}).get("username") == username:
            latest[event["auditID"]] = event
    found = []
    for event in latest.values():
        ref = event.get("objectRef")
        if not ref:  # a non-resource URL (discovery, /version): say so rather than hide it
            found.append(Request("", "", event.get("requestURI", "?"), event["verb"], "", 0, "non-resource"))
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        found.append(
            Request(
                namespace=ref.get("namespace", ""),
                group=ref.get("apiGroup", ""),
                resource=resource,
                verb=event["verb"],
                name=ref.get("name", ""),
                code=int((event.get("responseStatus") or {}).get("code") or 0),
                decision=(event.get("annotations") or {}).get("authorization.k8s.io/decision", ""),
            )
        )
    return found


@dataclass
class Comparison:
    grants: list[Grant]
    used: Counter[Grant]
    ungranted: Counter[tuple[str, str, str, str]]  # (namespace, group, resource, verb) no grant covers
    denied: list[Request]

    @property
    def unused(self) -> list[Grant]:
        return [g for g in self.grants if not self.used[g]]

    def table(self) -> str:
        rows = [("scope", "apiGroup", "resource", "verb", "resourceNames", "granted", "used")]
        for g in self.grants:
            rows.append(
                (g.scope, g.group or '""', g.resource, g.verb, ",".join(g.names) or "*", "yes", str(self.used[g]))
            )
        for (ns, group, resource, verb), count in sorted(self.ungranted.items()):
            rows.append((ns or CLUSTER, group or '""', resource, verb, "", "NO", str(count)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def problems(self) -> list[str]:
        found = [f"granted but never used: {g}" for g in self.unused]
        found += [f"used but not granted by the manifest: {key} x{n}" for key, n in sorted(self.ungranted.items())]
        found += [f"denied: {r}" for r in self.denied]
        return found


def compare(grants: list[Grant], requests: list[Request]) -> Comparison:
    used: Counter[Grant] = Counter()
    ungranted: Counter[tuple[str, str, str, str]] = Counter()
    for request in requests:
        covering = [g for g in grants if g.covers(request)]
        used.update(covering)
        if not covering:
            ungranted[(request.namespace, request.group, request.resource, request.verb)] += 1
    return Comparison(grants, used, ungranted, [r for r in requests if r.denied])


def assert_least_privilege(cp: ControlPlane, docs: list[dict[str, Any]], sa_namespace: str) -> Comparison:
    grants = grants_of(docs, sa_namespace)
    assert grants, "the manifest grants the ServiceAccount nothing: the comparison would prove nothing"
    result = compare(grants, requests_by(cp, f"system:serviceaccount:{sa_namespace}:{SA_NAME}"))
    print(f"\nRBAC grants of {sa_namespace}/{SA_NAME} against the audit log:\n{result.table()}")
    problems = result.problems()
    assert not problems, "\n".join([*problems, "", result.table()])
    return result


# ------------------------------------------------------------------------------------------------ the run
@contextlib.contextmanager
def applied(cp: ControlPlane, docs: list[dict[str, Any]]) -> Iterator[None]:
    manifest = yaml.safe_dump_all(docs)
    cp.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        yield
    finally:
        cp.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=manifest, check=False)


def can_i(cp: ControlPlane, sa_namespace: str, verb: str, resource: str, namespace: str | None, *flags: str) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    out = cp.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        f"--as=system:serviceaccount:{sa_namespace}:{SA_NAME}",
        *scope,
        *flags,
        check=False,
    )
    return out.stdout.strip() == "yes"


async def events_of(env: Env, name: str) -> list[dict[str, Any]]:
    found = await client.CoreV1Api(env.api).list_namespaced_event(
        env.namespace, field_selector=f"involvedObject.name={name}"
    )
    return [{"reason": e.reason, "type": e.type, "count": e.count or 0} for e in found.items]


async def lease_exists(env: Env, namespace: str) -> bool:
    try:
        await client.CoordinationV1Api(env.api).read_namespaced_lease(LEASE_NAME, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def provoke_one_finalizer_conflict(monkeypatch: pytest.MonkeyPatch, env: Env, config: str) -> list[str]:
    """Before the controller's first patch of `config`, another client edits it: the patch meets 409 Conflict.

    That is the only path on which the controller GETs an OpenstackConfig (its finalizer helper re-reads the object
    and retries); the concurrent writer is real, only its timing is arranged.
    """
    edits: list[str] = []
    original = KubeClient.patch

    async def patch(
        self: KubeClient, resource: Any, name: str, body: Any, namespace: str | None = None, **kw: Any
    ) -> Any:
        if not edits and resource.plural == "openstackconfigs" and name == config and not kw.get("subresource"):
            edits.append(name)
            await env.patch(config, {"metadata": {"labels": {"edited-by": "someone-else"}}})
        return await original(self, resource, name, body, namespace, **kw)

    monkeypatch.setattr(KubeClient, "patch", patch)
    return edits


async def exercise_every_permission(
    env: Env, monkeypatch: pytest.MonkeyPatch, *, lease_namespace: str, policy_namespace: str
) -> None:
    """Run the controller (already configured with the ServiceAccount's kubeconfig) through every path."""
    await env.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        policy_namespace,
        "multinicoperators",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MultiNicOperator",
            "metadata": {"name": "policy"},
            "spec": {"reconcileTrigger": {"mode": "immediate"}},
        },
    )
    assert not await lease_exists(env, lease_namespace), "no Lease yet, so the controller must create it"
    await env.start(
        leader_elect=True, leader_election_namespace=lease_namespace, trigger_source=(policy_namespace, "policy")
    )
    assert env.service is not None
    await wait_for(
        lambda: env.service is not None and env.service.elector is not None and env.service.elector.is_leader,
        "leading with its own Lease",
    )
    await wait_for(lambda: lease_exists(env, lease_namespace), "Lease created by the service account")

    edits = provoke_one_finalizer_conflict(monkeypatch, env, "cfg")
    await env.put_secret("os-creds", {"password": "admin"})
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password")))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced as the service account")
    assert edits == ["cfg"], "the concurrent edit before the finalizer patch did not happen"
    assert len(await env.agent_rows("test-vm-1")) == 1
    await wait_for(lambda: _has_event(env, "Synced"), "Event written as the service account")

    # A webhook trigger: the receiving replica records it on the config (patch), the leader acknowledges it in status.
    token = env.settings.controller.trigger_token
    code, body = await env.http("POST", f"/trigger/{env.namespace}/cfg", headers={"Authorization": f"Bearer {token}"})
    assert code == 202, body
    await env.wait_status("cfg", lambda s: s.get(HANDLED_FIELD) == body["request"], "webhook trigger handled")

    # Secret rotation: a wrong password (Warning), the password rotated in OpenStack and the Secret (Synced
    # repeats), a wrong one again (the Warning repeats), rotated again.
    admin = next(user for user in env.sim.state.users if user.name == "admin")
    for password, phase in (("wrong", "Error"), ("rotated-1", "Synced"), ("wrong", "Error"), ("rotated-2", "Synced")):
        if phase == "Synced":
            admin.password = password
        await env.put_secret("os-creds", {"password": password})
        await env.wait_status("cfg", lambda s, p=phase: s.get("phase") == p, f"{phase} after rotating the Secret")
    await wait_for(lambda: _repeated(env, "Warning"), "the repeated Warning counted on its Event (patch)", timeout=45)

    await env.delete("cfg")
    await wait_for(lambda: _gone(env), "finalizer removed as the service account")
    assert await env.all_interfaces() == []
    await env.stop()  # graceful: the leader releases its Lease (an update)


async def _has_event(env: Env, reason: str) -> bool:
    return any(e["reason"] == reason for e in await events_of(env, "cfg"))


async def _repeated(env: Env, event_type: str) -> bool:
    return any(e["type"] == event_type and e["count"] >= 2 for e in await events_of(env, "cfg"))


async def _gone(env: Env) -> bool:
    return await env.get("cfg") is None


# ------------------------------------------------------------------------------------------------ tests
async def test_controller_runs_as_its_least_privilege_service_account(
    env: Env, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """controller.yaml: cluster-wide grants, Lease in the controller's namespace."""
    await env.stop()
    ns = env.namespace
    docs = relocate(load(CLUSTER_WIDE.read_text()), {MANIFEST_NAMESPACE: ns})
    with applied(control_plane, docs):

        def can(verb: str, resource: str, namespace: str | None = ns, *flags: str) -> bool:
            return can_i(control_plane, ns, verb, resource, namespace, *flags)

        assert not can("create", "secrets") and not can("delete", "openstackconfigs.multinic.example.com")
        assert not can("update", "multinicoperators.multinic.example.com") and not can("list", "pods")
        assert not can("create", "leases.coordination.k8s.io", "default"), "Leases only in its own namespace"

        kubeconfig = control_plane.service_account_kubeconfig(ns, SA_NAME, create=False)
        env.settings = replace(env.settings, kubeconfig=kubeconfig)
        await exercise_every_permission(env, monkeypatch, lease_namespace=ns, policy_namespace=ns)

        # The audit log proves who did the writes, that every granted verb was needed, and that nothing was denied.
        result = assert_least_privilege(control_plane, docs, ns)

        # What the comparison above found unneeded stays refused (RBAC's own answer, not our reading of the YAML).
        assert not can("update", "openstackconfigs.multinic.example.com"), "nothing is PUT"
        assert not can("update", "openstackconfigs.multinic.example.com", ns, "--subresource=status")
        assert not can("get", "openstackconfigs.multinic.example.com", ns, "--subresource=status")
        assert not can("update", "openstackconfigs.multinic.example.com", ns, "--subresource=finalizers")
        assert not can("get", "multinicoperators.multinic.example.com"), "the policy is only listed and watched"
        assert not can("update", "leases.coordination.k8s.io/someone-elses"), "only its own Lease"
        assert can("update", f"leases.coordination.k8s.io/{LEASE_NAME}") and can("get", "secrets", "default")
    used = {(g.resource, g.verb) for g in result.grants if result.used[g]}
    assert {("openstackconfigs/status", "patch"), ("events", "create"), ("events", "patch")} <= used
    assert {("leases", "create"), ("leases", "update"), ("openstackconfigs", "get")} <= used


async def test_namespaced_overlay_confines_secrets_and_events_to_watched_namespaces(
    env: Env, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """namespaced/: WATCH_NAMESPACES=<the test namespace>, controller and Lease in a namespace of their own."""
    await env.stop()
    watched, home = env.namespace, f"{env.namespace}-ctl"
    control_plane.kubectl("create", "namespace", home)
    try:
        docs = relocate(build_namespaced(control_plane), {MANIFEST_NAMESPACE: home, EXAMPLE_WATCHED_NAMESPACE: watched})
        with applied(control_plane, docs):

            def can(verb: str, resource: str, namespace: str | None) -> bool:
                return can_i(control_plane, home, verb, resource, namespace)

            assert can("get", "secrets", watched) and can("create", "events", watched)
            for elsewhere in (home, "default", None):
                assert not can("get", "secrets", elsewhere), f"Secrets readable in {elsewhere or 'all namespaces'}"
                assert not can("list", "secrets", elsewhere) and not can("create", "events", elsewhere)
            assert can("list", "openstackconfigs.multinic.example.com", None), "configs stay cluster-wide"

            kubeconfig = control_plane.service_account_kubeconfig(home, SA_NAME, create=False)
            env.settings = replace(env.settings, kubeconfig=kubeconfig, namespaces=(watched,))
            await exercise_every_permission(env, monkeypatch, lease_namespace=home, policy_namespace=home)
            result = assert_least_privilege(control_plane, docs, home)
        assert {g.scope for g in result.grants if g.resource in ("secrets", "events")} == {watched}
    finally:
        control_plane.kubectl("delete", "namespace", home, "--wait=false", check=False)


def test_manifests_build_and_pass_server_side_dry_run(control_plane: ControlPlane, namespace: str) -> None:
    """The shipped manifests as `kubectl` sees them, and every object accepted by the real apiserver."""
    # The overlay's base is a verbatim copy (kustomize loads nothing from a parent directory).
    assert (NAMESPACED / "controller.yaml").read_text() == CLUSTER_WIDE.read_text(), (
        "manifests/rbac/namespaced/controller.yaml differs from manifests/rbac/controller.yaml: copy it over"
    )
    # `kubectl apply -f manifests/rbac/` (the documented way to grant the controller by hand) applies the files
    # of that folder (controller.yaml, operator.yaml) and nothing of the overlay below it.
    listed = control_plane.kubectl("apply", "--dry-run=client", "-o", "name", "-f", str(RBAC_DIR)).stdout.split()
    expected = [
        f"{d['kind'].lower()}/{d['metadata']['name']}"
        for manifest in sorted(RBAC_DIR.glob("*.yaml"))
        for d in load(manifest.read_text())
    ]
    assert "rolebinding/multinic-controller-secrets-events" not in expected, "no object of the overlay"
    kinds_and_names = (line.split("/", 1) for line in listed)  # "clusterrole.rbac.authorization.k8s.io/NAME"
    assert sorted(f"{kind.split('.')[0]}/{name}" for kind, name in kinds_and_names) == sorted(expected)

    base = {(d["kind"], d["metadata"]["name"]) for d in load(CLUSTER_WIDE.read_text())}
    built = build_namespaced(control_plane)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in built}
    assert kinds == base - {("ClusterRoleBinding", "multinic-controller-secrets-events")} | {
        ("RoleBinding", "multinic-controller-secrets-events")
    }
    # Same rules, only the scope of the Secret/Event grants differs.
    cluster = grants_of(load(CLUSTER_WIDE.read_text()), MANIFEST_NAMESPACE)
    overlay = grants_of(built, MANIFEST_NAMESPACE)
    assert {replace(g, scope=CLUSTER) for g in overlay} == {replace(g, scope=CLUSTER) for g in cluster}
    assert {g.scope for g in overlay if g.resource in ("secrets", "events")} == {EXAMPLE_WATCHED_NAMESPACE}

    # Server-side dry run (schema, admission, RBAC escalation checks). The shipped namespaces are moved to this
    # test's namespace: a dry run needs them to exist, and the shared control plane must not get multinic-system.
    for docs in (load(CLUSTER_WIDE.read_text()), built):
        moved = relocate(docs, {MANIFEST_NAMESPACE: namespace, EXAMPLE_WATCHED_NAMESPACE: namespace})
        out = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(moved))
        assert out.stdout.count("(server dry run)") == len(moved), out.stdout
