"""Issue 13 through the real kube-apiserver admission chain: the protection webhook runs in this test process on
https://127.0.0.1:PORT (a certificate from `webhook_tls`), the apiserver calls it through a
ValidatingWebhookConfiguration built by `webhook_config` with `clientConfig.url` + `caBundle`.

Each test uses its own configuration name, a `namespaceSelector` on its namespace and an extra object label, so the
fail-closed webhook can never catch another test's objects, and deletes the configuration afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from multinic_ctrl.kube.client import KubeClient
from multinic_ctrl.metrics import REGISTRY
from multinic_ctrl.operator.admission import Decision, Installation, Policy
from multinic_ctrl.operator.names import MANAGED_BY_LABEL, MANAGED_BY_NAMESPACE_LABEL, PROTECTED_LABEL
from multinic_ctrl.operator.webhook_config import desired_configuration, injected_bundle
from multinic_ctrl.operator.webhook_server import DenialBatcher, ProtectionWebhook
from multinic_ctrl.operator.webhook_sync import WebhookSync, served_material
from multinic_ctrl.operator.webhook_tls import CA_CERT, TLS_CERT, TLS_KEY, Identity, Lifetimes, plan_secret
from tests.support.control_plane import ControlPlane, ControlPlaneError, free_port, locate_assets

pytestmark = pytest.mark.e2e

DENIED = 'admission webhook "vprotection.multinic.example.com" denied the request'
SCALE_DENIED = 'admission webhook "vprotection-scale.multinic.example.com" denied the request'
FAILED_CALL = 'failed calling webhook "vprotection.multinic.example.com"'
TEST_LABEL = "multinic.example.com/protection-test"
OWNER = "production-system"
JANE = "jane"
SECRET_VALUE = "dGhlLXJvb3QtcGFzc3dvcmQ="  # base64 of the-root-password


def protected_labels(namespace: str, suffix: str, app: str) -> dict[str, str]:
    return {
        "app": app,
        PROTECTED_LABEL: "true",
        MANAGED_BY_LABEL: OWNER,
        MANAGED_BY_NAMESPACE_LABEL: namespace,
        TEST_LABEL: suffix,
    }


def managed_objects(namespace: str, suffix: str) -> list[dict[str, Any]]:
    def meta(name: str, app: str) -> dict[str, Any]:
        return {"name": name, "namespace": namespace, "labels": protected_labels(namespace, suffix, app)}

    def pod(app: str, image: str) -> dict[str, Any]:
        return {
            "metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": app, "image": image}]},
        }

    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("multinic-controller", "controller"),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "controller"}},
                "template": pod("controller", "multinic:v1"),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta("multinic-mariadb", "mariadb"),
            "spec": {
                "replicas": 1,
                "serviceName": "multinic-mariadb-headless",
                "selector": {"matchLabels": {"app": "mariadb"}},
                "template": pod("mariadb", "mariadb:10.11"),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta("multinic-controller", "controller"),
            "spec": {"selector": {"app": "controller"}, "ports": [{"name": "probe", "port": 8082}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta("multinic-mariadb-credentials", "mariadb"),
            "data": {"root-password": SECRET_VALUE},
        },
    ]


@dataclass
class Protection:
    cp: ControlPlane
    namespace: str
    suffix: str
    hook: ProtectionWebhook
    data: dict[str, bytes]
    config_name: str
    denials: list[Decision] = field(default_factory=list)

    @property
    def operator(self) -> str:
        return f"system:serviceaccount:{self.namespace}:multinic-operator"

    async def kubectl(
        self, *args: str, as_user: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl in a thread (the webhook answers on this event loop), never raising."""
        argv = [*args, f"--namespace={self.namespace}"]
        if as_user is not None:
            argv.append(f"--as={as_user}")
        return await asyncio.to_thread(self.cp.kubectl, *argv, check=False, stdin=stdin)

    async def jane(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return await self.kubectl(*args, as_user=JANE, stdin=stdin)

    async def as_operator(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return await self.kubectl(*args, as_user=self.operator, stdin=stdin)

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        done = await self.kubectl("get", kind, name, "--output=json")
        return json.loads(done.stdout) if done.returncode == 0 else None

    async def install_configuration(self) -> None:
        config = desired_configuration(
            ca_bundle=self.data[CA_CERT],
            client=f"https://127.0.0.1:{self.hook.bound_port}/validate",
            operator_users=[self.operator],
            name=self.config_name,
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
            extra_object_labels={TEST_LABEL: self.suffix},
        )
        await asyncio.to_thread(self.cp.kubectl, "apply", "--filename=-", stdin=json.dumps(config))

    async def wait_until_enforced(self, timeout: float = 30.0) -> None:
        """The apiserver picks configurations up from an informer: wait until a dry-run edit is judged."""
        deadline = time.monotonic() + timeout
        while True:
            done = await self.jane(
                "patch",
                "deployment",
                "multinic-controller",
                "--dry-run=server",
                "--type=merge",
                "--patch",
                '{"metadata":{"annotations":{"probe":"1"}}}',
            )
            if DENIED in done.stderr:
                return
            assert time.monotonic() < deadline, f"webhook not enforced after {timeout}s: {done.stderr}"
            await asyncio.sleep(0.3)


def assert_denied(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode != 0, done.stdout
    assert DENIED in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def assert_allowed(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr


@contextlib.asynccontextmanager
async def protection(
    cp: ControlPlane,
    namespace: str,
    *,
    lifetimes: Lifetimes = Lifetimes(),  # noqa: B008 - frozen
    keepalive_timeout: float = 75.0,
    renew_every: float | None = None,
) -> AsyncIterator[Protection]:
    """`renew_every`: run the operator's certificate loop (on a fast clock) from the moment the webhook serves,
    as the operator does: with short test lifetimes the first certificate may expire before the apiserver has
    even picked the configuration up on a loaded machine."""
    suffix = "s" + uuid.uuid4().hex[:8]
    identity = Identity("multinic-operator-webhook", namespace, ("127.0.0.1",))
    data = plan_secret(None, identity, datetime.now(UTC), lifetimes).data
    policy = Policy(
        frozenset({f"system:serviceaccount:{namespace}:multinic-operator"}), {namespace: Installation(OWNER)}
    )
    denials: list[Decision] = []
    hook = ProtectionWebhook(
        lambda: policy,
        data[TLS_CERT],
        data[TLS_KEY],
        host="127.0.0.1",
        port=0,
        on_denial=denials.append,
        batcher=DenialBatcher(interval=1.0),
        keepalive_timeout=keepalive_timeout,
    )
    await hook.start()
    p = Protection(cp, namespace, suffix, hook, data, f"vprotection-test-{suffix}", denials)
    stop_renewing = asyncio.Event()

    async def renew(every: float) -> None:  # what the operator's certificate loop does
        while not stop_renewing.is_set():
            plan = plan_secret(p.data, identity, datetime.now(UTC), lifetimes)
            if plan.changed:
                assert plan.data[CA_CERT] == p.data[CA_CERT]  # same CA: no re-injection needed
                p.data = plan.data
                p.hook.set_certificate(plan.data[TLS_CERT], plan.data[TLS_KEY])
            await asyncio.sleep(every)

    renewer = asyncio.create_task(renew(renew_every)) if renew_every is not None else None
    try:
        # RBAC lets jane and the operator's ServiceAccount edit anything in the namespace: only admission decides
        await p.kubectl("create", "serviceaccount", "multinic-operator")
        await asyncio.to_thread(
            cp.kubectl,
            "create",
            "rolebinding",
            f"edit-all-{suffix}",
            "--clusterrole=cluster-admin",
            f"--user={JANE}",
            f"--serviceaccount={namespace}:multinic-operator",
            f"--namespace={namespace}",
        )
        for obj in managed_objects(namespace, suffix):
            assert_allowed(await p.as_operator("create", "--filename=-", stdin=json.dumps(obj)))
        await p.install_configuration()
        await p.wait_until_enforced()
        yield p
    finally:
        stop_renewing.set()
        await asyncio.to_thread(
            cp.kubectl, "delete", "validatingwebhookconfiguration", p.config_name, "--ignore-not-found", check=False
        )
        await hook.stop()
        if renewer is not None:
            await renewer  # re-raises a failed renewal (e.g. the CA changed)


def counter(operation: str, result: str) -> float:
    labels = {"operation": operation, "result": result}
    return REGISTRY.get_sample_value("multinic_operator_protection_events_total", labels) or 0.0


# ------------------------------------------------------------------------------------------ direct edits


async def test_direct_edits_are_denied_with_the_field_to_change(control_plane: ControlPlane, namespace: str) -> None:
    async with protection(control_plane, namespace) as p:
        owner = f"MultiNicOperator {namespace}/{OWNER}"
        denied_before = counter("UPDATE", "denied")

        # kubectl edit sends a patch; patch, replace and scale are the other ways in
        assert_denied(
            await p.jane(
                "patch", "deployment", "multinic-controller", "--type=merge", "--patch", '{"spec":{"replicas":3}}'
            ),
            f"multinic-controller is managed by {owner}; change spec.controller.replicas there",
        )
        live = await p.get("deployment", "multinic-controller")
        assert live is not None
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
        assert_denied(
            await p.jane("replace", "--filename=-", stdin=json.dumps(live)), "change spec.controller.image there"
        )
        # kubectl scale: a Scale carries no labels, so its own webhook in the same configuration judges it by name
        scaled = await p.jane("scale", "deployment", "multinic-controller", "--replicas=5")
        assert scaled.returncode != 0
        assert SCALE_DENIED in scaled.stderr and "change spec.controller.replicas there" in scaled.stderr, scaled.stderr
        assert_denied(
            await p.jane(
                "patch",
                "statefulset",
                "multinic-mariadb",
                "--type=merge",
                "--patch",
                '{"spec":{"template":{"spec":{"containers":[{"name":"mariadb","image":"mysql:8"}]}}}}',
            ),
            "multinic-mariadb is managed by",
            "change spec.database.image there",
        )
        assert_denied(
            await p.jane(
                "patch",
                "service",
                "multinic-controller",
                "--type=merge",
                "--patch",
                '{"metadata":{"annotations":{"x":"y"}}}',
            ),
            "change spec.controller there",
        )
        secret_edit = await p.jane(
            "patch",
            "secret",
            "multinic-mariadb-credentials",
            "--type=merge",
            "--patch",
            '{"data":{"root-password":"eA=="}}',
        )
        assert_denied(secret_edit, "change spec.database.credentials there")
        assert SECRET_VALUE not in secret_edit.stderr + secret_edit.stdout

        # removing the protected label is itself a protected change
        assert_denied(
            await p.jane("label", "deployment", "multinic-controller", f"{PROTECTED_LABEL}-"),
            f"the {PROTECTED_LABEL} label is part of the protection",
        )
        for kind, name in (
            ("deployment", "multinic-controller"),
            ("statefulset", "multinic-mariadb"),
            ("service", "multinic-controller"),
            ("secret", "multinic-mariadb-credentials"),
        ):
            assert_denied(
                await p.jane("delete", kind, name, "--wait=false"), "deleting the MultiNicOperator uninstalls it"
            )
            assert await p.get(kind, name) is not None

        # reads pass
        got = await p.jane("get", "deployment,statefulset,service,secret", "--output=name")
        assert_allowed(got)
        assert "deployment.apps/multinic-controller" in got.stdout

        # nothing changed; denials were counted and handed to the callback and the batcher
        live = await p.get("deployment", "multinic-controller")
        assert live is not None and live["spec"]["replicas"] == 2
        assert PROTECTED_LABEL in live["metadata"]["labels"]
        assert counter("UPDATE", "denied") >= denied_before + 7
        assert {d.request.username for d in p.denials} == {JANE}
        assert p.hook.batcher is not None
        batches = p.hook.batcher.flush(force=True)
        assert batches[(namespace, OWNER)].prevented >= 11


async def test_the_operator_identity_passes(control_plane: ControlPlane, namespace: str) -> None:
    async with protection(control_plane, namespace) as p:
        assert_allowed(
            await p.as_operator(
                "patch", "deployment", "multinic-controller", "--type=merge", "--patch", '{"spec":{"replicas":3}}'
            )
        )
        assert_allowed(await p.as_operator("scale", "deployment", "multinic-controller", "--replicas=4"))
        assert_allowed(
            await p.as_operator(
                "patch",
                "secret",
                "multinic-mariadb-credentials",
                "--type=merge",
                "--patch",
                '{"data":{"root-password":"eA=="}}',
            )
        )
        assert_allowed(await p.as_operator("delete", "service", "multinic-controller", "--wait=false"))
        live = await p.get("deployment", "multinic-controller")
        assert live is not None and live["spec"]["replicas"] == 4
        # a look-alike identity (a same-named ServiceAccount elsewhere, with RBAC here) is no operator
        lookalike = "system:serviceaccount:other:multinic-operator"
        await p.kubectl("create", "rolebinding", "lookalike", "--clusterrole=cluster-admin", f"--user={lookalike}")
        assert_denied(
            await p.kubectl(
                "patch",
                "deployment",
                "multinic-controller",
                "--type=merge",
                "--patch",
                '{"spec":{"replicas":1}}',
                as_user=lookalike,
            ),
        )
        assert p.denials and all(d.request.username != p.operator for d in p.denials)

        # Kubernetes controllers may keep their bookkeeping (annotations, status), not change the spec
        controller = "system:serviceaccount:kube-system:deployment-controller"
        await p.kubectl("create", "rolebinding", "controller", "--clusterrole=cluster-admin", f"--user={controller}")
        assert_allowed(
            await p.kubectl(
                "annotate",
                "deployment",
                "multinic-controller",
                "deployment.kubernetes.io/revision=2",
                as_user=controller,
            )
        )
        assert_denied(
            await p.kubectl(
                "patch",
                "deployment",
                "multinic-controller",
                "--type=merge",
                "--patch",
                '{"spec":{"replicas":1}}',
                as_user=controller,
            ),
            "change spec.controller.replicas there",
        )


async def test_unprotected_objects_pass(control_plane: ControlPlane, namespace: str) -> None:
    async with protection(control_plane, namespace) as p:
        assert_allowed(await p.jane("create", "configmap", "mine", "--from-literal=a=b"))
        assert_allowed(await p.jane("label", "configmap", "mine", "x=y"))
        assert_allowed(await p.jane("delete", "configmap", "mine"))
        # adding the protected label to an object of one's own is a protected change too
        assert_allowed(await p.jane("create", "configmap", "dressed-up", "--from-literal=a=b"))
        assert_denied(
            await p.jane("label", "configmap", "dressed-up", f"{PROTECTED_LABEL}=true", f"{TEST_LABEL}={p.suffix}")
        )


# ------------------------------------------------------------------------------------------ endpoint down


async def test_endpoint_down_fails_closed_but_the_operator_still_repairs(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with protection(control_plane, namespace) as p:
        await p.hook.stop()
        blocked = await p.jane(
            "patch", "deployment", "multinic-controller", "--type=merge", "--patch", '{"spec":{"replicas":3}}'
        )
        assert blocked.returncode != 0
        assert FAILED_CALL in blocked.stderr, blocked.stderr
        assert_denied_or_failed = await p.jane("delete", "secret", "multinic-mariadb-credentials", "--wait=false")
        assert assert_denied_or_failed.returncode != 0
        assert await p.get("secret", "multinic-mariadb-credentials") is not None
        # matchConditions exempt the operator in the apiserver itself: no call, no lockout
        assert_allowed(
            await p.as_operator(
                "patch", "deployment", "multinic-controller", "--type=merge", "--patch", '{"spec":{"replicas":3}}'
            )
        )
        assert_allowed(await p.as_operator("delete", "secret", "multinic-mariadb-credentials", "--wait=false"))
        # objects outside the objectSelector never reach the webhook
        assert_allowed(await p.jane("create", "configmap", "mine", "--from-literal=a=b"))
        assert_allowed(await p.jane("delete", "configmap", "mine"))


# ------------------------------------------------------------------------------------------ certificate renewal


async def test_requests_keep_succeeding_across_certificate_renewals(
    control_plane: ControlPlane, namespace: str
) -> None:
    lifetimes = Lifetimes(serving=timedelta(seconds=6))
    # a short keep-alive makes the apiserver open new connections, so renewed certificates are really handshaked
    async with protection(control_plane, namespace, lifetimes=lifetimes, keepalive_timeout=1.0, renew_every=0.25) as p:
        first_expiry = datetime.now(UTC) + lifetimes.serving
        outcomes: list[str] = []
        deadline = time.monotonic() + 16
        while time.monotonic() < deadline:
            done = await p.jane(
                "patch",
                "deployment",
                "multinic-controller",
                "--dry-run=server",
                "--type=merge",
                "--patch",
                '{"spec":{"replicas":7}}',
            )
            outcomes.append(done.stderr.strip())
            assert DENIED in done.stderr and "change spec.controller.replicas there" in done.stderr, done.stderr
            await asyncio.sleep(1.6)
        assert datetime.now(UTC) > first_expiry + timedelta(seconds=5)  # well past the first certificate's life
        assert p.hook.tls.generation >= 3, p.hook.tls.generation
        served_generations = [g for g, n in p.hook.tls.handshakes.items() if n and g > 0]
        assert len(served_generations) >= 2, p.hook.tls.handshakes
        assert len(outcomes) >= 6


# ------------------------------------------------------------------------------------------ cleanup never hangs


@pytest.fixture(scope="module")
def cleanup_plane() -> Iterator[ControlPlane]:
    """A private control plane with the namespace controller and the garbage collector running under their own
    ServiceAccounts (as in a real cluster), so admission sees their real identities. Private because the garbage
    collector acts on the whole cluster."""
    try:
        assets = locate_assets()
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
    cp = ControlPlane(assets)
    try:
        cp.start()
        assert cp.pki is not None
        port = free_port()
        kubeconfig = str(cp.kubeconfig_path)
        cp.start_process(
            "kube-controller-manager",
            [
                str(cp.assets_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={cp.pki.serving_cert}",
                f"--tls-private-key-file={cp.pki.serving_key}",
                "--controllers=namespace-controller,garbage-collector-controller",
                "--use-service-account-credentials=true",
                "--v=1",
            ],
            ready=lambda: cp._http_ok(f"https://127.0.0.1:{port}/healthz"),
        )
    except ControlPlaneError as exc:
        logs = cp.format_log_tails()
        cp.stop()
        pytest.fail(f"cleanup plane did not start: {exc}\n{logs}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


async def wait_gone(p: Protection, *args: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = await asyncio.to_thread(p.cp.kubectl, "get", *args, check=False)
        if done.returncode != 0 and "NotFound" in done.stderr:
            return
        assert time.monotonic() < deadline, f"{args} still there after {timeout}s: {done.stdout}"
        await asyncio.sleep(0.5)


async def test_cascading_and_namespace_deletion_complete(cleanup_plane: ControlPlane) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cleanup_plane.kubectl("create", "namespace", namespace)
    async with protection(cleanup_plane, namespace) as p:
        # a protected object owned by an unprotected one: deleting the owner cascades through the GC
        owner = await p.kubectl("create", "configmap", "owner", "--from-literal=a=b", "--output=json")
        uid = json.loads(owner.stdout)["metadata"]["uid"]
        dependant = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependant",
                "labels": protected_labels(namespace, p.suffix, "x"),
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}],
            },
        }
        assert_allowed(await p.as_operator("create", "--filename=-", stdin=json.dumps(dependant)))
        assert_denied(await p.jane("delete", "configmap", "dependant", "--wait=false"))
        assert_allowed(await p.jane("delete", "configmap", "owner"))
        await wait_gone(p, "configmap", "dependant", f"--namespace={namespace}")

        # the namespace controller deletes the protected objects and the namespace goes away
        assert_allowed(
            await asyncio.to_thread(
                cleanup_plane.kubectl, "delete", "namespace", namespace, "--wait=false", check=False
            )
        )
        await wait_gone(p, "namespace", namespace)


# ------------------------------------------------------------------------------------------ WebhookSync


async def test_webhook_sync_creates_reuses_and_reinjects(control_plane: ControlPlane, namespace: str) -> None:
    """The operator's certificate loop on the real apiserver: Secret created once and reused across a restart, the
    configuration injected, re-injected after an edit and recreated after a deletion, a corrupt Secret
    regenerated and served without a restart."""
    suffix = "s" + uuid.uuid4().hex[:8]
    operator = f"system:serviceaccount:{namespace}:multinic-operator"
    identity = Identity("multinic-operator-webhook", namespace, ("127.0.0.1",))
    config_name = f"vprotection-test-{suffix}"
    policy = Policy(frozenset({operator}), {namespace: Installation(OWNER)})
    client = await KubeClient.from_config(str(control_plane.kubeconfig_path))
    hook: ProtectionWebhook | None = None

    def configuration(bundle: bytes) -> dict[str, Any]:
        assert hook is not None
        return desired_configuration(
            ca_bundle=bundle,
            client=f"https://127.0.0.1:{hook.bound_port}/validate",
            operator_users=[operator],
            name=config_name,
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            extra_object_labels={TEST_LABEL: suffix},
        )

    def new_sync() -> WebhookSync:
        return WebhookSync(
            client, secret_name="webhook-tls", identity=identity, configuration=configuration, webhook=hook
        )

    async def live_configuration() -> dict[str, Any] | None:
        done = await asyncio.to_thread(
            control_plane.kubectl, "get", "validatingwebhookconfiguration", config_name, "--output=json", check=False
        )
        return json.loads(done.stdout) if done.returncode == 0 else None

    try:
        first = new_sync()
        plan = await first.ensure_certificate()
        assert plan.reasons == ("created",)
        hook = ProtectionWebhook(lambda: policy, *served_material(plan), host="127.0.0.1", port=0)
        await hook.start()
        first.webhook = hook
        await first.sync()
        assert first.ready
        p = Protection(control_plane, namespace, suffix, hook, plan.data, config_name)
        await p.kubectl("create", "serviceaccount", "multinic-operator")
        await asyncio.to_thread(
            control_plane.kubectl,
            "create",
            "rolebinding",
            "edit-all",
            "--clusterrole=cluster-admin",
            f"--user={JANE}",
            f"--serviceaccount={namespace}:multinic-operator",
            f"--namespace={namespace}",
        )
        for obj in managed_objects(namespace, suffix):
            assert_allowed(await p.as_operator("create", "--filename=-", stdin=json.dumps(obj)))
        await p.wait_until_enforced()
        assert injected_bundle(await live_configuration()) == plan.material.bundle

        # a restarted operator reuses the Secret byte for byte
        restarted = new_sync()
        again = await restarted.sync()
        assert not again.changed and again.material == plan.material

        # an edited caBundle is put back; so is a deleted configuration
        await asyncio.to_thread(
            control_plane.kubectl,
            "patch",
            "validatingwebhookconfiguration",
            config_name,
            "--type=json",
            "--patch",
            json.dumps([{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "Zm9v"}]),
        )
        assert injected_bundle(await live_configuration()) is None
        await restarted.sync()
        assert injected_bundle(await live_configuration()) == plan.material.bundle
        await asyncio.to_thread(control_plane.kubectl, "delete", "validatingwebhookconfiguration", config_name)
        await restarted.sync()
        assert injected_bundle(await live_configuration()) == plan.material.bundle

        # a corrupt Secret is regenerated; the new bundle is injected and the new certificate served
        await p.kubectl("patch", "secret", "webhook-tls", "--type=merge", "--patch", '{"data":{"tls.key":"Zm9v"}}')
        regenerated = await restarted.sync()
        assert regenerated.reasons[0].startswith("corrupt")
        assert hook.tls.generation == 1
        assert injected_bundle(await live_configuration()) == regenerated.material.bundle
        assert restarted.ready
        p.data = regenerated.data
        await p.wait_until_enforced()

        # the loop: a deletion seen by a watch (here: poke) is repaired within seconds
        loop = asyncio.create_task(restarted.run(period=30))
        try:
            await asyncio.to_thread(control_plane.kubectl, "delete", "validatingwebhookconfiguration", config_name)
            restarted.poke()
            deadline = time.monotonic() + 10
            while injected_bundle(await live_configuration()) != regenerated.material.bundle:
                assert time.monotonic() < deadline, "configuration not recreated"
                await asyncio.sleep(0.2)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    finally:
        await asyncio.to_thread(
            control_plane.kubectl,
            "delete",
            "validatingwebhookconfiguration",
            config_name,
            "--ignore-not-found",
            check=False,
        )
        if hook is not None:
            await hook.stop()
        await client.close()
