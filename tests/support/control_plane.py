"""A real etcd + kube-apiserver pair for tests, in the spirit of controller-runtime's envtest.

Why: MultiNic lives on watch streams, CRD schemas, status subresources, finalizers, RBAC,
admission and Leases.  Fakes only test our own assumptions about those, so the integration
tier talks to the real thing.  The binaries come from ``scripts/control-plane-assets``
(built once from the Go module proxy and cached); this module only *runs* them:

* every run gets fresh certificates (CA, apiserver serving cert, an admin client cert in
  ``system:masters``) and service-account signing keys, generated with ``cryptography``;
* etcd and kube-apiserver listen on free loopback ports only;
* the apiserver runs with ``--authorization-mode=Node,RBAC`` so restricted identities
  (ServiceAccount tokens, see :meth:`ControlPlane.service_account_kubeconfig`) are
  really restricted, and writes a Metadata-level audit log (:attr:`ControlPlane.audit_log_path`)
  that later tests inspect;
* the apiserver can be stopped and started on its own (:meth:`ControlPlane.stop_apiserver`,
  :meth:`ControlPlane.start_apiserver`) while etcd keeps the data, to test watch resumption
  and reconnects;
* component logs go to files; :meth:`ControlPlane.log_tails` returns their ends for
  failure reports.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS_SCRIPT = REPO_ROOT / "scripts" / "control-plane-assets"
#: The project's CustomResourceDefinitions.
CRD_DIR = REPO_ROOT / "manifests" / "crds"
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kubectl")

#: Identity of the admin client certificate; ``system:masters`` bypasses RBAC.
ADMIN_USER = "multinic-test-admin"
ADMIN_GROUP = "system:masters"
#: Binaries/files ``start_workloads`` needs next to etcd and kube-apiserver.
WORKLOAD_COMPONENTS = ("kube-controller-manager", "kube-scheduler", "kwok")
WORKLOAD_FILES = ("kwok-stages.yaml", "kwok-storage-class.yaml")
#: Nodes carrying this annotation (value ``fake``) are played by kwok.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: In-cluster service CIDR; its first address is the ``kubernetes`` Service IP.
SERVICE_CIDR = "10.0.0.0/24"

#: Audit everything at Metadata level (who did what to which object, never bodies, so
#: Secrets cannot leak into the log).  RequestReceived is omitted: ResponseComplete (and
#: ResponseStarted for watches) carry the same metadata plus the response code.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be provisioned or did not become healthy."""


# --------------------------------------------------------------------------------------
# assets


def assets_usable(directory: Path) -> bool:
    """Whether ``directory`` holds executable etcd, kube-apiserver and kubectl."""
    return all(os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES)


def locate_assets(env: Mapping[str, str] | None = None) -> Path:
    """Find the control-plane binaries without ever building them.

    Order: ``$KUBEBUILDER_ASSETS`` (the envtest convention) if set; else the cache that
    ``scripts/control-plane-assets`` fills (asked with ``--no-build``, which only looks).
    Building takes many minutes on a small machine, so a test run must not start it as a
    side effect: a missing asset is a clear error telling the developer what to run.
    """
    env = os.environ if env is None else env
    hint = (
        'run `export KUBEBUILDER_ASSETS="$(scripts/control-plane-assets)"` once '
        "(builds etcd/kube-apiserver/kubectl from the Go module proxy and caches them), "
        "or point KUBEBUILDER_ASSETS at a directory holding etcd, kube-apiserver and kubectl"
    )
    configured = env.get("KUBEBUILDER_ASSETS")
    if configured:
        directory = Path(configured)
        if assets_usable(directory):
            return directory
        raise ControlPlaneError(
            f"KUBEBUILDER_ASSETS={configured} lacks executable {', '.join(REQUIRED_BINARIES)}; {hint}"
        )
    try:
        found = subprocess.run(
            [str(ASSETS_SCRIPT), "--no-build"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        raise ControlPlaneError(f"cannot run {ASSETS_SCRIPT}: {exc}; {hint}") from exc
    cached = Path(found.stdout.strip()) if found.returncode == 0 else None
    if cached is None or not assets_usable(cached):
        raise ControlPlaneError(f"control-plane binaries are not built yet; {hint}\n{found.stderr.strip()}")
    return cached


# --------------------------------------------------------------------------------------
# certificates


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _issue(
    subject: x509.Name,
    issuer: _Issued | None,
    *,
    is_ca: bool = False,
    server_names: Sequence[str] = (),
    client: bool = False,
) -> _Issued:
    """Create a key pair and a certificate for it (self-signed when ``issuer`` is None).

    P-256 keys: generating them is instant, unlike RSA, which matters because every test
    session mints a fresh PKI.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if server_names:
        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    signer = issuer.key if issuer is not None else key
    cert = builder.sign(signer, hashes.SHA256())
    return _Issued(cert=cert, key=key)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated key material."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public_key: Path
    sa_private_key: Path

    @classmethod
    def generate(cls, directory: Path, server_names: Sequence[str]) -> Pki:
        """Mint a CA, an apiserver serving cert, an admin client cert and SA signing keys."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = _issue(_name("multinic-test-ca"), None, is_ca=True)
        serving = _issue(_name("kube-apiserver"), ca, server_names=server_names)
        admin = _issue(_name(ADMIN_USER, ADMIN_GROUP), ca, client=True)
        # Service-account tokens: RS256 is what every Kubernetes client/verifier supports.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pki = cls(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            sa_public_key=directory / "sa.pub",
            sa_private_key=directory / "sa.key",
        )
        for path, data in (
            (pki.ca_cert, ca.cert.public_bytes(serialization.Encoding.PEM)),
            (pki.ca_key, _pem_key(ca.key)),
            (pki.serving_cert, serving.cert.public_bytes(serialization.Encoding.PEM)),
            (pki.serving_key, _pem_key(serving.key)),
            (pki.admin_cert, admin.cert.public_bytes(serialization.Encoding.PEM)),
            (pki.admin_key, _pem_key(admin.key)),
            (
                pki.sa_public_key,
                sa_key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            ),
            (pki.sa_private_key, _pem_key(sa_key)),
        ):
            path.write_bytes(data)
            if path.suffix == ".key":
                path.chmod(0o600)
        return pki

    def issue_client_cert(self, stem: Path, common_name: str, organization: str | None = None) -> tuple[Path, Path]:
        """A client certificate signed by this CA (``stem``.crt / ``stem``.key); returns both paths.

        For identities the apiserver must recognise by certificate: a kubelet
        (``system:node:NAME`` in ``system:nodes``) or the apiserver's own kubelet client.
        """
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = _Issued(cert=x509.load_pem_x509_certificate(self.ca_cert.read_bytes()), key=ca_key)
        issued = _issue(_name(common_name, organization), ca, client=True)
        cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(_pem_key(issued.key))
        key.chmod(0o600)
        return cert, key


# --------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    """A currently free loopback TCP port (tiny race window; acceptable for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Child pre-exec hook: get SIGKILLed when the test process dies, even by SIGKILL.

    Why: on a shared machine a crashed or killed pytest must not leave an apiserver and
    etcd running forever.  Linux-only (PR_SET_PDEATHSIG); silently ignored elsewhere.
    The signal fires when the *thread* that forked exits, so it is only armed for
    processes started from the main thread (``asyncio.to_thread(cp.start_apiserver)``
    would otherwise kill the apiserver as soon as the executor thread retires); the
    others rely on :meth:`ControlPlane.stop` and the ``atexit`` hook.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class _Process:
    """One component process with its log file; restartable with the same arguments."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        if self.running:
            return
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== starting {self.name}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )

    def exit_code(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL after ``timeout`` seconds."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self._popen.terminate()
                try:
                    self._popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._popen.kill()
                    self._popen.wait(5)
            self._popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 256 * lines))
                data = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------------------
# the control plane


class ControlPlane:
    """etcd + kube-apiserver on loopback, with an admin kubeconfig and an audit log.

    Usage::

        with ControlPlane(locate_assets()) as cp:
            cp.kubeconfig_path  # admin kubeconfig (system:masters)
            cp.audit_log_path   # JSON lines, one audit event each
            cp.stop_apiserver(); cp.start_apiserver()  # etcd keeps running
    """

    def __init__(
        self,
        assets_dir: Path,
        work_dir: Path | None = None,
        *,
        extra_apiserver_args: Sequence[str] = (),
        start_timeout: float = 90.0,
        kubelet_client: bool = False,
        advertise_address: str | None = None,
    ) -> None:
        """``kubelet_client``: let the apiserver talk to real kubelets (``tests/support/node.py``): it gets
        a client certificate in ``system:masters`` for the kubelet API (logs, exec) and reaches nodes by
        their InternalIP (the node names resolve nowhere).

        ``advertise_address``: make the apiserver reachable from pods on a real node - it listens on all
        addresses (same port), advertises this one, has it in its serving certificate, and the
        ``kubernetes`` Service's endpoints point at it."""
        self.kubelet_client = kubelet_client
        self.advertise_address = advertise_address
        self.assets_dir = Path(assets_dir)
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="multinic-cp-"))
        self.start_timeout = start_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)

        self.etcd_client_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_client_port}"
        self.api_url = f"https://127.0.0.1:{self.apiserver_port}"

        self.pki_dir = self.work_dir / "pki"
        self.etcd_data_dir = self.work_dir / "etcd-data"
        self.logs_dir = self.work_dir / "logs"
        self.audit_policy_path = self.work_dir / "audit-policy.yaml"
        #: JSON-lines audit log written by the apiserver (Metadata level, all requests).
        self.audit_log_path = self.logs_dir / "audit.log"
        #: Admin kubeconfig (client certificate in group system:masters).
        self.kubeconfig_path = self.work_dir / "admin.kubeconfig"
        self.pki: Pki | None = None
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._extra: dict[str, _Process] = {}

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Generate PKI and config, start etcd, then the apiserver; wait until both are healthy."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.pki is None:
            service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
            self.pki = Pki.generate(
                self.pki_dir,
                server_names=[
                    "127.0.0.1",
                    "localhost",
                    service_ip,
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    *([self.advertise_address] if self.advertise_address else []),
                ],
            )
            self.audit_policy_path.write_text(yaml.safe_dump(AUDIT_POLICY))
            self._write_kubeconfig(
                self.kubeconfig_path,
                user={
                    "client-certificate": str(self.pki.admin_cert),
                    "client-key": str(self.pki.admin_key),
                },
                user_name=ADMIN_USER,
            )
        atexit.register(self.stop)
        try:
            self._start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop(remove=False)
            raise

    def stop(self, *, remove: bool | None = None) -> None:
        """Stop every process; remove the work dir unless asked to keep it.

        ``MULTINIC_KEEP_CONTROL_PLANE=1`` keeps certs, logs and etcd data for post-mortems.
        """
        for proc in list(self._extra.values()):
            proc.stop()
        self._extra.clear()
        self.stop_apiserver()
        if self._etcd is not None:
            self._etcd.stop()
        if remove is None:
            remove = self._owns_work_dir and not os.environ.get("MULTINIC_KEEP_CONTROL_PLANE")
        if remove:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._etcd = _Process(
            "etcd",
            [
                str(self.assets_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.etcd_data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--initial-cluster-state=new",
                # Test data is disposable: skip fsync, which dominates latency on shared disks.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.logs_dir / "etcd.log",
        )
        self._etcd.start()
        self._wait(
            "etcd",
            self._etcd,
            lambda: self._http_ok(f"{self.etcd_url}/health", lambda body: b'"health":"true"' in body),
        )

    def apiserver_args(self) -> list[str]:
        """The kube-apiserver command line (exposed so tests can see what they run against)."""
        assert self.pki is not None
        return [
            str(self.assets_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={self.api_url}",
            f"--service-account-key-file={self.pki.sa_public_key}",
            f"--service-account-signing-key-file={self.pki.sa_private_key}",
            f"--audit-policy-file={self.audit_policy_path}",
            f"--audit-log-path={self.audit_log_path}",
            # Blocking: an event is on disk before the response, so tests can read it at once.
            "--audit-log-mode=blocking",
            "--audit-log-format=json",
            "--allow-privileged=true",
            # The "kubernetes" Service cannot point at a loopback address; nothing needs it.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.pki_dir}",
            "--v=1",
            *self._kubelet_client_args(),
            *self._advertise_args(),
            *self.extra_apiserver_args,
        ]

    def _advertise_args(self) -> list[str]:
        if not self.advertise_address:
            return []
        # Later flags win: these replace the loopback-only defaults above.
        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.advertise_address}",
            "--endpoint-reconciler-type=lease",
        ]

    def _kubelet_client_args(self) -> list[str]:
        if not self.kubelet_client:
            return []
        assert self.pki is not None
        stem = self.pki_dir / "apiserver-kubelet-client"
        if not stem.with_suffix(".crt").exists():
            self.pki.issue_client_cert(stem, "kube-apiserver-kubelet-client", ADMIN_GROUP)
        return [
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={stem.with_suffix('.crt')}",
            f"--kubelet-client-key={stem.with_suffix('.key')}",
        ]

    def start_apiserver(self) -> None:
        """(Re)start kube-apiserver on the same port and certs; etcd must be running."""
        if self._etcd is None or not self._etcd.running:
            raise ControlPlaneError("etcd is not running; call start() first")
        if self._apiserver is None:
            self._apiserver = _Process("kube-apiserver", self.apiserver_args(), self.logs_dir / "kube-apiserver.log")
        self._apiserver.start()
        self._wait("kube-apiserver", self._apiserver, lambda: self._http_ok(f"{self.api_url}/readyz"))

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (clients see connection errors; etcd keeps all data)."""
        if self._apiserver is not None:
            self._apiserver.stop()

    @property
    def apiserver_running(self) -> bool:
        return self._apiserver is not None and self._apiserver.running

    def start_process(self, name: str, argv: list[str], ready: Callable[[], bool] | None = None) -> None:
        """Run an extra component (e.g. kube-controller-manager) managed like the others.

        ``ready`` is an optional zero-argument callable returning True once it is up.
        """
        proc = _Process(name, argv, self.logs_dir / f"{name}.log")
        self._extra[name] = proc
        proc.start()
        if ready is not None:
            self._wait(name, proc, ready)

    # -- workloads (kube-controller-manager, kube-scheduler, kwok) ---------------------

    @property
    def workloads_running(self) -> bool:
        """Controller manager and scheduler running, and kwok too unless it was left out."""
        needed = [name for name in WORKLOAD_COMPONENTS if name != "kwok" or name in self._extra]
        return all(name in self._extra and self._extra[name].running for name in needed)

    def start_workloads(
        self,
        nodes: Sequence[str] = ("kwok-node-1", "kwok-node-2"),
        *,
        kwok: bool = True,
        component_identities: bool = False,
    ) -> None:
        """Make Deployments and StatefulSets work: controllers, scheduler and fake nodes.

        Why: the operator's end-to-end tests need Pods that get scheduled and become Ready
        without a container runtime.  kube-controller-manager turns Deployments/StatefulSets
        into Pods (and maintains ServiceAccounts, namespaces, GC), kube-scheduler binds them,
        and kwok plays the kubelet for the given ``nodes`` (Ready nodes with lease
        heartbeats; Pods Running+Ready with an IP; PVCs of the default ``kwok-volume``
        StorageClass bound to fake PVs).  Not started by default: these controllers also act
        on the objects other tests create (e.g. a ``kube-root-ca.crt`` ConfigMap appears in
        every namespace), so plain API tests run without them.

        ``kwok=False``: no kwok and no ``kwok-volume`` StorageClass (a real node: kwok's hostPath volumes
        would land on the host).  ``component_identities``: run kube-controller-manager and
        kube-scheduler as a real cluster does - as ``system:kube-controller-manager`` (each controller
        then with its own ``system:serviceaccount:kube-system:*`` token, ``--use-service-account-credentials``)
        and ``system:kube-scheduler``, bound by the apiserver's bootstrap RBAC - instead of the admin.
        Admission webhooks that tell Kubernetes' controllers from users (the protection webhook) see
        the identities they would see in production.
        """
        if nodes and not kwok:
            raise ControlPlaneError("fake nodes need kwok")
        components = WORKLOAD_COMPONENTS if kwok else tuple(c for c in WORKLOAD_COMPONENTS if c != "kwok")
        files = WORKLOAD_FILES if kwok else ()
        missing = [f for f in (*components, *files) if not (self.assets_dir / f).exists()]
        if missing:
            raise ControlPlaneError(
                f"{self.assets_dir} lacks {', '.join(missing)}; run scripts/control-plane-assets "
                "(it builds them next to etcd and kube-apiserver)"
            )
        assert self.pki is not None
        kubeconfig = str(self.kubeconfig_path)

        def common(config: str) -> list[str]:
            return [
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                # Serve /healthz with our own cert so the health wait can verify it.
                f"--tls-cert-file={self.pki.serving_cert}",
                f"--tls-private-key-file={self.pki.serving_key}",
                "--v=1",
            ]

        kcm_config = scheduler_config = kubeconfig
        if component_identities:
            kcm_config = str(self.client_cert_kubeconfig("system:kube-controller-manager"))
            scheduler_config = str(self.client_cert_kubeconfig("system:kube-scheduler"))
        kcm_port, scheduler_port, kwok_port = free_port(), free_port(), free_port()
        if "kube-controller-manager" not in self._extra:
            self.start_process(
                "kube-controller-manager",
                [
                    str(self.assets_dir / "kube-controller-manager"),
                    *common(kcm_config),
                    f"--secure-port={kcm_port}",
                    f"--root-ca-file={self.pki.ca_cert}",
                    f"--service-account-private-key-file={self.pki.sa_private_key}",
                    f"--cluster-signing-cert-file={self.pki.ca_cert}",
                    f"--cluster-signing-key-file={self.pki.ca_key}",
                    f"--use-service-account-credentials={str(component_identities).lower()}",
                    # No cloud, no real nodes: evict nothing just because kwok lags a little.
                    "--node-monitor-grace-period=120s",
                ],
                ready=lambda: self._http_ok(f"https://127.0.0.1:{kcm_port}/healthz"),
            )
        if "kube-scheduler" not in self._extra:
            self.start_process(
                "kube-scheduler",
                [str(self.assets_dir / "kube-scheduler"), *common(scheduler_config), f"--secure-port={scheduler_port}"],
                ready=lambda: self._http_ok(f"https://127.0.0.1:{scheduler_port}/healthz"),
            )
        if kwok and "kwok" not in self._extra:
            self.kubectl("apply", f"--filename={self.assets_dir / 'kwok-storage-class.yaml'}")
            self.start_process(
                "kwok",
                [
                    str(self.assets_dir / "kwok"),
                    f"--kubeconfig={kubeconfig}",
                    f"--config={self.assets_dir / 'kwok-stages.yaml'}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                    "--node-lease-duration-seconds=40",
                    "--cidr=10.244.0.1/16",
                    "--node-ip=127.0.0.1",
                    f"--server-address=127.0.0.1:{kwok_port}",
                ],
                ready=lambda: self._http_ok(f"http://127.0.0.1:{kwok_port}/healthz"),
            )
        self.add_fake_nodes(nodes)

    def add_fake_nodes(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Register kwok-managed Nodes and wait until they are Ready."""
        if not names:
            return
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                },
            }
            for name in names
        ]
        self.kubectl("apply", "--filename=-", stdin=yaml.safe_dump_all(manifests))
        self.kubectl("wait", "--for=condition=Ready", f"--timeout={timeout:.0f}s", *(f"node/{name}" for name in names))

    # -- health ----------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context trusting our CA and presenting the admin client certificate."""
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return ctx

    def _http_ok(self, url: str, check: Callable[[bytes], bool] | None = None) -> bool:
        ctx = self.ssl_context() if url.startswith("https") else None
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
                body = resp.read()
                return bool(resp.status == 200 and (check is None or check(body)))
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait(self, name: str, proc: _Process, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if ready():
                return
            code = proc.exit_code()
            if code is not None:
                raise ControlPlaneError(f"{name} exited with code {code} while starting:\n{proc.tail(40)}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise ControlPlaneError(f"{name} not healthy after {self.start_timeout:.0f}s:\n{proc.tail(40)}")

    # -- logs ------------------------------------------------------------------------

    def log_tails(self, lines: int = 60) -> dict[str, str]:
        """The last ``lines`` lines of each component log (for failure reports)."""
        procs = [p for p in (self._etcd, self._apiserver, *self._extra.values()) if p is not None]
        return {p.name: p.tail(lines) for p in procs}

    def format_log_tails(self, lines: int = 60) -> str:
        """:meth:`log_tails` as one printable block."""
        return "\n".join(
            f"----- {name} (last {lines} lines) -----\n{text}" for name, text in self.log_tails(lines).items()
        )

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """Parsed audit events written so far (a later tail may see more)."""
        if not self.audit_log_path.exists():
            return
        with self.audit_log_path.open() as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    # -- clients ---------------------------------------------------------------------

    def _write_kubeconfig(self, path: Path, *, user: dict[str, str], user_name: str) -> Path:
        assert self.pki is not None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "multinic-test",
                    "cluster": {"server": self.api_url, "certificate-authority": str(self.pki.ca_cert)},
                }
            ],
            "users": [{"name": user_name, "user": user}],
            "contexts": [{"name": user_name, "context": {"cluster": "multinic-test", "user": user_name}}],
            "current-context": user_name,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this control plane (admin unless told otherwise).

        With ``check`` a failure raises :class:`ControlPlaneError` carrying kubectl's stderr.
        """
        argv = [str(self.assets_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig_path}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, input=stdin, timeout=120)
        if check and done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def service_account_token(self, namespace: str, name: str, *, create: bool = True, duration: str = "1h") -> str:
        """A bound token for ServiceAccount ``namespace/name`` via the TokenRequest API."""
        if create:
            self.kubectl("create", "namespace", namespace, check=False)
            self.kubectl("-n", namespace, "create", "serviceaccount", name, check=False)
        return self.kubectl("-n", namespace, "create", "token", name, f"--duration={duration}").stdout.strip()

    def service_account_kubeconfig(self, namespace: str, name: str, *, create: bool = True) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (RBAC applies).

        Restricted-identity tests use it to prove the controller works with only the
        permissions its manifests grant.
        """
        token = self.service_account_token(namespace, name, create=create)
        return self.token_kubeconfig(token, f"sa-{namespace}-{name}")

    def client_cert_kubeconfig(self, common_name: str, organization: str | None = None) -> Path:
        """A kubeconfig authenticating with a fresh client certificate for ``common_name`` (in ``organization``).

        For identities the bootstrap RBAC knows by name (``system:kube-controller-manager``,
        ``system:kube-scheduler``)."""
        assert self.pki is not None
        stem = self.pki_dir / common_name.replace(":", "-")
        cert, key = self.pki.issue_client_cert(stem, common_name, organization)
        return self._write_kubeconfig(
            stem.with_suffix(".kubeconfig"),
            user={"client-certificate": str(cert), "client-key": str(key)},
            user_name=common_name.replace(":", "-"),
        )

    def token_kubeconfig(self, token: str, user_name: str) -> Path:
        """Write a kubeconfig for a bearer token; returns its path."""
        return self._write_kubeconfig(
            self.work_dir / f"{user_name}.kubeconfig", user={"token": token}, user_name=user_name
        )


async def new_api_client(kubeconfig: Path) -> Any:
    """A ``kubernetes_asyncio.client.ApiClient`` for ``kubeconfig``; the caller closes it."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration=configuration)
