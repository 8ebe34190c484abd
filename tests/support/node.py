"""A real Kubernetes node for tests: containerd + kubelet joined to a test :class:`ControlPlane`.

Why: kwok makes Pods *look* Ready; only a real node proves that the image starts, runs as the user
it claims, survives a read-only root filesystem, answers its probes and writes readable logs.  The
facts this module relies on were measured on this machine kind (``shared/design/REAL-CLUSTER.md``).

Invariants (the hygiene a CI tier needs):

* **one node per machine** - containerd and kubelet use fixed host paths (``/run/containerd/{s,fifo}``,
  ``/var/lib/kubelet/device-plugins``, ``/var/log/containers``, cgroups under ``/sys/fs/cgroup/*/k8s.io``);
  :data:`LOCK_PATH` is held (``flock``) for the node's whole life, a second node waits for it;
* **every run starts clean** - a previous run that crashed left a state file (:data:`STATE_PATH`): its
  processes (by pid, after checking their command line), mounts, bridges and changed sysctls are undone
  before anything starts;
* **teardown order** - delete pods, stop kubelet, kill what is left in containerd, stop containerd, unmount,
  remove bridges, restore the sysctls kubelet changed (``vm.overcommit_memory``, ``kernel.panic``,
  ``kernel.panic_on_oops``) and the ones the CNI bridge changed (``net.ipv4.ip_forward``);
* **images without a registry** - the OCI archives of ``scripts/test-images`` are imported into
  containerd's ``k8s.io`` namespace under their own and their public names (``docker.io/library/...``), so
  manifests with the operator's default images run; containerd's image store is cached between runs
  (``~/.cache/multinic/node``), so an unchanged archive is imported once;
* **volumes as in a cluster** - the default StorageClass :data:`STORAGE_CLASS` binds claims to ``local``
  volumes on this node made with :meth:`Node.add_local_volume` (kubelet applies ``fsGroup`` to them, so
  non-root pods can write); their directories live in the node's work dir;
* **Services and cluster DNS as in a cluster** - kube-proxy (iptables mode, masquerading all Service
  traffic so no host sysctl has to change) makes Service IPs, the ``kubernetes`` Service included, reachable
  from pods and from the host; CoreDNS runs as a host process on the node IP (kubelet's ``clusterDNS``), so
  pods resolve ``NAME``, ``NAME.NAMESPACE`` and ``NAME.NAMESPACE.svc.cluster.local``.  The host itself does
  not use the cluster DNS: from the host, use Service IPs or pod IPs (:meth:`Node.pod_ip`).  Every ``KUBE-*``
  iptables chain (kube-proxy's and kubelet's canaries) is removed at teardown.

Usage::

    with ControlPlane(assets, kubelet_client=True) as cp:
        cp.start_workloads(nodes=(), kwok=False, component_identities=True)  # no fake nodes
        with Node(cp, assets) as node:      # Ready node named multinic-node, images imported
            cp.kubectl("run", ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import yaml

from tests.support.control_plane import REPO_ROOT, ControlPlane, ControlPlaneError, _Process, free_port

NODE_NAME = "multinic-node"
#: kubelet refuses a loopback node IP and this machine has no ``dummy`` module: an empty bridge holds it.
NODE_IP = "10.254.254.1"
NODE_BRIDGE = "mn-node0"
#: The CNI bridge the pods hang off; the host is its gateway (first address), so pods reach host services.
POD_BRIDGE = "mn-cni0"
POD_SUBNET = "10.244.7.0/24"
POD_GATEWAY = "10.244.7.1"
CNI_NETWORK = "multinic-node"
CLUSTER_DOMAIN = "cluster.local"
#: The default StorageClass: pre-created local volumes on this node (no provisioner), see Node.add_local_volume.
STORAGE_CLASS = "multinic-node-local"
LOCK_PATH = Path("/run/lock/multinic-node.lock")
STATE_PATH = Path("/run/multinic-node/state.json")
RUN_DIR = Path("/run/multinic-node")
CACHE_DIR = Path(os.environ.get("MULTINIC_CACHE_DIR", Path.home() / ".cache" / "multinic")) / "node"
IMAGES_SCRIPT = REPO_ROOT / "scripts" / "test-images"
IMAGES_CACHE = CACHE_DIR.parent / "images"
#: Sysctls kubelet (and the CNI bridge plugin) change on the host: saved before, restored after.
SYSCTLS = (
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
)
#: Host paths containerd/kubelet use whatever they are told; removed at teardown when empty or ours.
FIXED_DIRS = ("/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc", "/var/lib/kubelet/device-plugins")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class NodeError(ControlPlaneError):
    """The node could not be provisioned, did not become Ready, or could not be cleaned up."""


def _log(message: str) -> None:
    print(f"node: {message}", flush=True)  # progress of a slow fixture (pytest -s shows it)


def _run(*argv: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_pid(pid: int, marker: str, timeout: float = 10.0) -> None:
    """Stop ``pid`` if it still runs a command containing ``marker`` (pids are reused)."""
    if marker not in _cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and marker in _cmdline(pid):
        time.sleep(0.2)
    if marker in _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_matching(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (a path only our processes use)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and marker in _cmdline(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _mounts_under(prefixes: tuple[str, ...]) -> list[str]:
    """Mount points below any of ``prefixes``, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _kill_cgroup_processes(name: str = "k8s.io") -> None:
    """SIGKILL every process left in the node's container cgroups (only this node uses ``k8s.io``)."""
    top = CGROUP_ROOT / "pids" / name
    if not top.is_dir():
        top = CGROUP_ROOT / name  # cgroup v2
    if not top.is_dir():
        return
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def _remove_kube_iptables() -> None:
    """Remove every ``KUBE-*`` chain (kube-proxy's Services, kubelet's canaries and KUBE-FIREWALL).

    Only chains with that prefix and the jumps to them: rules of other programs are left alone.
    """
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            done = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                continue
            chains, jumps = [], []
            for line in done.stdout.splitlines():
                words = shlex.split(line)
                if words[:1] == ["-N"] and words[1].startswith("KUBE-"):
                    chains.append(words[1])
                elif (
                    words[:1] == ["-A"]
                    and not words[1].startswith("KUBE-")
                    and "-j" in words
                    and words[words.index("-j") + 1].startswith("KUBE-")
                ):
                    jumps.append(words[1:])
            for rule in jumps:
                subprocess.run([tool, "-w", "-t", table, "-D", *rule], capture_output=True, check=False)
            for chain in chains:
                subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in chains:
                subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True, check=False)


def _remove_cgroups(name: str = "k8s.io") -> None:
    """rmdir the (empty, process-free) cgroup trees containerd created under every hierarchy."""
    if not CGROUP_ROOT.is_dir():
        return
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


class Node:
    """containerd + kubelet as node :data:`NODE_NAME` of ``control_plane`` (see the module docstring)."""

    def __init__(
        self,
        control_plane: ControlPlane,
        assets_dir: Path | None = None,
        *,
        images: Mapping[str, Mapping[str, Any]] | None = None,
        ready_timeout: float = 120.0,
        build_images: bool = True,
        kube_proxy: bool = True,
        cluster_dns: bool | None = None,
    ) -> None:
        """``build_images``: run ``scripts/test-images`` first (rebuilds what changed); False takes the images
        it built last, however old."""
        if not control_plane.kubelet_client:
            raise NodeError("the control plane needs ControlPlane(..., kubelet_client=True) to talk to a kubelet")
        self.cp = control_plane
        self.assets_dir = Path(assets_dir or control_plane.assets_dir)
        self.images = dict(images) if images is not None else None
        self.ready_timeout = ready_timeout
        self.build_images = build_images
        self.kube_proxy = kube_proxy
        #: None: CoreDNS when `scripts/control-plane-assets --node` has built it
        self.cluster_dns = (self.assets_dir / "coredns").exists() if cluster_dns is None else cluster_dns
        self.work_dir = control_plane.work_dir / "node"
        self.logs_dir = self.work_dir / "logs"
        self.containerd_root = CACHE_DIR / "containerd"
        self.containerd_state = RUN_DIR / "containerd"
        self.socket = self.containerd_state / "containerd.sock"
        self.kubelet_root = self.work_dir / "kubelet"
        self.pod_logs_dir = self.work_dir / "pod-logs"
        self._containerd: _Process | None = None
        self._kubelet: _Process | None = None
        self._proxy: _Process | None = None
        self._dns: _Process | None = None
        self._lock: IO[str] | None = None
        self._saved_sysctls: dict[str, str] = {}
        #: seconds each start phase took (for the tier's timing report)
        self.timings: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for tool in ("containerd", "ctr", "ip", *(("iptables",) if self.kube_proxy else ())):
            if shutil.which(tool) is None:
                raise NodeError(
                    f"{tool} is missing: apt-get install containerd containernetworking-plugins iproute2 iptables "
                    "(scripts/test-images installs them)"
                )
        if not (self.assets_dir / "kubelet").exists():
            raise NodeError(f"{self.assets_dir} has no kubelet; run scripts/control-plane-assets --node")
        if os.geteuid() != 0:
            raise NodeError("a real node needs root (containerd, bridges, mounts)")
        begin = time.monotonic()
        self._take_lock()
        try:
            cleanup_previous_run()
            self._saved_sysctls = {k: v for k in SYSCTLS if (v := _read_sysctl(k)) is not None}
            self._save_state()
            self.timings["cleanup"] = time.monotonic() - begin
            mark = time.monotonic()
            self._images_manifest()
            self.timings["image_check"] = time.monotonic() - mark
            mark = time.monotonic()
            self._network()
            self._start_containerd()
            self.timings["containerd"] = time.monotonic() - mark
            mark = time.monotonic()
            self._import_images()
            self.timings["images"] = time.monotonic() - mark
            if self.cluster_dns:
                mark = time.monotonic()
                self._start_coredns()
                self.timings["coredns"] = time.monotonic() - mark
            mark = time.monotonic()
            self._start_kubelet()
            self.timings["kubelet_ready"] = time.monotonic() - mark
            if self.kube_proxy:
                mark = time.monotonic()
                self._start_kube_proxy()
                self.timings["kube_proxy"] = time.monotonic() - mark
            self._storage_class()
        except BaseException:
            logs = self.format_log_tails()
            self.stop()
            if logs:
                _log(f"start failed; component logs:\n{logs}")
            raise
        self.timings["total"] = time.monotonic() - begin
        _log("ready in " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))

    def stop(self) -> None:
        """Teardown in the documented order; safe to call twice and after a failed start."""
        if self._kubelet is not None and self._kubelet.running and self.cp.apiserver_running:
            self._delete_pods()
        if self._kubelet is not None:
            self._kubelet.stop(timeout=10)
        if self._proxy is not None:
            self._proxy.stop(timeout=10)
        if self._dns is not None:
            self._dns.stop(timeout=10)
        if self._containerd is not None and self._containerd.running:
            self._remove_containers()
        if self._containerd is not None:
            self._containerd.stop(timeout=10)
        if self._lock is not None:
            _cleanup_host(self._saved_sysctls)
            _forget_state()
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- pieces --------------------------------------------------------------------------

    def _take_lock(self, timeout: float = 900.0) -> None:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        lock = LOCK_PATH.open("a+")
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    _log(f"another test node holds {LOCK_PATH} (one node per machine); waiting")
                    announced = True
                if time.monotonic() > deadline:
                    lock.close()
                    raise NodeError(f"{LOCK_PATH} still held after {timeout:.0f}s") from None
                time.sleep(2)
        self._lock = lock

    def _save_state(self) -> None:
        """What a later run needs to undo this one if it crashes (processes, sysctls)."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "work_dir": str(self.work_dir),
            "sysctls": self._saved_sysctls,
            "pids": {
                name: {"pid": proc.pid, "marker": str(self.work_dir)}
                for name, proc in (
                    ("containerd", self._containerd),
                    ("kubelet", self._kubelet),
                    ("kube-proxy", self._proxy),
                    ("coredns", self._dns),
                )
                if proc is not None and proc.pid is not None
            },
        }
        tmp = STATE_PATH.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(STATE_PATH)

    def _network(self) -> None:
        _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_BRIDGE)
        _run("ip", "link", "set", NODE_BRIDGE, "up")

    def _start_containerd(self) -> None:
        for d in (self.work_dir, self.logs_dir, self.containerd_root, self.containerd_state, self.pod_logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        cni_dir = self.work_dir / "cni"
        cni_dir.mkdir(exist_ok=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": POD_BRIDGE,
                    "isGateway": True,
                    # No masquerading: pods only talk to the host and each other (and no iptables needed).
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.work_dir / "cni-ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }
        (cni_dir / "10-multinic.conflist").write_text(json.dumps(conflist, indent=2))
        pause = self._image_refs().get("pause", "localhost/multinic-pause:3.10")
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{self.containerd_root}"
state = "{self.containerd_state}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.containerd_state}/containerd.sock.ttrpc"

[{cri}]
  sandbox_image = "{pause}"
  # This sandbox refuses lowering oom_score_adj: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  max_container_log_line_size = 65536

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni_dir}"
  max_conf_num = 1
"""
        config_path = self.work_dir / "containerd.toml"
        config_path.write_text(config)
        self._containerd = _Process(
            "containerd",
            ["containerd", f"--config={config_path}", "--log-level=warn"],
            self.logs_dir / "containerd.log",
        )
        self._containerd.start()
        self._save_state()
        self._wait("containerd", self._containerd, lambda: self._ctr("version", check=False) is not None, 60)

    def _ctr(self, *args: str, check: bool = True, timeout: float = 300) -> str | None:
        done = subprocess.run(
            ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            if check:
                raise NodeError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
            return None
        return done.stdout

    def _image_refs(self) -> dict[str, str]:
        return {name: str(spec["ref"]) for name, spec in (self._images_manifest() or {}).items()}

    def _images_manifest(self) -> dict[str, Mapping[str, Any]] | None:
        if self.images is None:
            # Stale images would test old code: rebuild what changed (about a minute for the controller
            # image after a source change; under a second when nothing changed).
            if self.build_images:
                _log("checking the test images (scripts/test-images rebuilds what changed)")
                found = subprocess.run(
                    [str(IMAGES_SCRIPT)], stdout=subprocess.PIPE, text=True, timeout=1800, check=False
                )
                if found.returncode != 0:
                    raise NodeError("scripts/test-images failed (its output is above)")
                manifest = Path(found.stdout.strip()) / "images.json"
            else:  # whatever was built last, however old
                manifest = IMAGES_CACHE / "images.json"
                if not manifest.exists():
                    raise NodeError(f"no {manifest}: run scripts/test-images (builds and caches the images)")
            self.images = json.loads(manifest.read_text())
        return self.images

    def _import_images(self) -> None:
        """Import each archive once (a marker per archive; containerd's store is cached)."""
        listed = set((self._ctr("images", "list", "--quiet") or "").split())
        for name, spec in (self._images_manifest() or {}).items():
            archive = Path(spec["archive"])
            marker = self.containerd_root / f".imported-{archive.name}"
            names = [str(spec["ref"]), *(str(a) for a in spec.get("aliases", []))]
            if marker.exists() and all(n in listed for n in names):
                continue
            started = time.monotonic()
            self._ctr("images", "import", str(archive))
            for alias in names[1:]:
                self._ctr("images", "tag", "--force", names[0], alias)
            for old in self.containerd_root.glob(f".imported-{name}-*"):
                old.unlink()
            marker.touch()
            _log(f"imported {name} ({names[0]}) in {time.monotonic() - started:.1f}s")

    def _start_kubelet(self) -> None:
        assert self.cp.pki is not None
        pki = self.cp.pki
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        cert, key = pki.issue_client_cert(self.work_dir / "kubelet-client", f"system:node:{NODE_NAME}", "system:nodes")
        kubeconfig = self._write_kubeconfig(self.work_dir / "kubelet.kubeconfig", cert, key)
        healthz_port = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            # A shared CI disk is often fuller than kubelet's defaults tolerate: evict nothing.
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "podLogsDir": str(self.pod_logs_dir),
            "serializeImagePulls": False,
            "registerNode": True,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "60s",
            "maxPods": 50,
            "shutdownGracePeriod": "0s",
            **({"clusterDNS": [NODE_IP], "clusterDomain": CLUSTER_DOMAIN} if self.cluster_dns else {}),
        }
        config_path = self.work_dir / "kubelet-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._kubelet = _Process(
            "kubelet",
            [
                str(self.assets_dir / "kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.work_dir / 'kubelet-pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
            self.logs_dir / "kubelet.log",
        )
        self._kubelet.start()
        self._save_state()
        self._wait("kubelet", self._kubelet, lambda: self._http_ok(f"http://127.0.0.1:{healthz_port}/healthz"), 60)
        done = self.cp.kubectl(
            "wait", "--for=condition=Ready", f"--timeout={self.ready_timeout:.0f}s", f"node/{NODE_NAME}", check=False
        )
        if done.returncode != 0:
            # The Node object may not exist yet (registration races the first wait): one retry.
            time.sleep(2)
            self.cp.kubectl(
                "wait", "--for=condition=Ready", f"--timeout={self.ready_timeout:.0f}s", f"node/{NODE_NAME}"
            )

    def _start_coredns(self) -> None:
        """CoreDNS on the node IP, serving the cluster domain from the apiserver (the admin identity: test-only)."""
        health_port, ready_port = free_port(), free_port()
        corefile = self.work_dir / "Corefile"
        corefile.write_text(
            f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.cp.kubeconfig_path}
        pods insecure
        ttl 5
    }}
    cache 5
}}
"""
        )
        self._dns = _Process(
            "coredns", [str(self.assets_dir / "coredns"), "-conf", str(corefile)], self.logs_dir / "coredns.log"
        )
        self._dns.start()
        self._save_state()
        self._wait("coredns", self._dns, lambda: self._http_ok(f"http://127.0.0.1:{ready_port}/ready"), 60)

    def _start_kube_proxy(self) -> None:
        """kube-proxy in iptables mode as ``system:kube-proxy`` (bound to ``system:node-proxier`` by default)."""
        assert self.cp.pki is not None
        pki = self.cp.pki
        cert, key = pki.issue_client_cert(self.work_dir / "kube-proxy-client", "system:kube-proxy")
        kubeconfig = self._write_kubeconfig(self.work_dir / "kube-proxy.kubeconfig", cert, key)
        healthz_port, metrics_port = free_port(), free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            # 0: leave the host's conntrack limits and timeouts alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # masqueradeAll: replies from a backend on the same bridge come back through the host without
            # depending on br_netfilter; no localhost NodePorts, so route_localnet stays as it is.
            "iptables": {
                "masqueradeAll": True,
                "localhostNodePorts": False,
                "syncPeriod": "30s",
                "minSyncPeriod": "0s",
            },
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }
        config_path = self.work_dir / "kube-proxy-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._proxy = _Process(
            "kube-proxy",
            [str(self.assets_dir / "kube-proxy"), f"--config={config_path}", "--v=1"],
            self.logs_dir / "kube-proxy.log",
        )
        self._proxy.start()
        self._save_state()
        self._wait("kube-proxy", self._proxy, lambda: self._http_ok(f"http://127.0.0.1:{healthz_port}/healthz"), 60)

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path) -> Path:
        assert self.cp.pki is not None
        cluster = {"server": self.cp.api_url, "certificate-authority": str(self.cp.pki.ca_cert)}
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": cluster}],
                    "users": [{"name": "user", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
                    "contexts": [{"name": "user", "context": {"cluster": "test", "user": "user"}}],
                    "current-context": "user",
                }
            )
        )
        path.chmod(0o600)
        return path

    @staticmethod
    def _http_ok(url: str) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback healthz
                return bool(resp.status == 200)
        except OSError:
            return False

    def _wait(self, name: str, proc: _Process, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            code = proc.exit_code()
            if code is not None:
                raise NodeError(f"{name} exited with code {code} while starting:\n{proc.tail(40)}")
            time.sleep(0.2)
        raise NodeError(f"{name} not ready after {timeout:.0f}s:\n{proc.tail(40)}")

    def _delete_pods(self, timeout: float = 30.0) -> None:
        """Delete every pod through the apiserver so kubelet tears sandboxes down (CNI, mounts) itself."""
        self.cp.kubectl("cordon", NODE_NAME, check=False)
        self.cp.kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            f"--field-selector=spec.nodeName={NODE_NAME}",
            "--grace-period=1",
            f"--timeout={timeout:.0f}s",
            "--ignore-not-found",
            check=False,
        )

    def _remove_containers(self) -> None:
        """Kill and delete whatever kubelet left in containerd (tasks, containers)."""
        for container in (self._ctr("containers", "list", "--quiet", check=False) or "").split():
            self._ctr("tasks", "kill", "--signal=SIGKILL", container, check=False, timeout=20)
            self._ctr("tasks", "delete", "--force", container, check=False, timeout=20)
            self._ctr("containers", "delete", container, check=False, timeout=20)

    def _storage_class(self) -> None:
        """The cluster's default StorageClass: local volumes on this node (:meth:`add_local_volume`)."""
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        }
        self.cp.kubectl("apply", "--filename=-", stdin=json.dumps(storage_class))

    # -- helpers for tests ---------------------------------------------------------------

    def add_local_volume(self, name: str, size: str = "20Gi") -> Path:
        """A ``local`` PersistentVolume of :data:`STORAGE_CLASS` on this node; returns its host directory.

        Why local and not hostPath: kubelet applies the pod's ``fsGroup`` to local volumes, so non-root
        workloads (MariaDB as UID 999) can write them, as with a CSI driver in a real cluster.  There is no
        provisioner: a claim binds to a volume created here beforehand (``size`` is nominal, it must only be at
        least what the claim asks).  The directory lives in the node's work dir, removed at teardown.
        """
        path = self.work_dir / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "local": {"path": str(path)},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                                ]
                            }
                        ]
                    }
                },
            },
        }
        self.cp.kubectl("apply", "--filename=-", stdin=json.dumps(volume))
        return path

    def kill_container(self, container_id: str) -> None:
        """SIGKILL a container's main process, as a crash or the OOM killer would (no graceful shutdown).

        ``container_id`` as in a pod's ``status.containerStatuses[].containerID`` (``containerd://`` or bare).
        """
        self._ctr("tasks", "kill", "--signal=SIGKILL", container_id.removeprefix("containerd://"), timeout=20)

    def pod_ip(self, namespace: str, name: str) -> str:
        return self.cp.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.podIP}").stdout.strip()

    def log_tails(self, lines: int = 60) -> dict[str, str]:
        procs = [p for p in (self._containerd, self._kubelet, self._proxy, self._dns) if p is not None]
        return {p.name: p.tail(lines) for p in procs}

    def format_log_tails(self, lines: int = 60) -> str:
        return "\n".join(
            f"----- {name} (last {lines} lines) -----\n{text}" for name, text in self.log_tails(lines).items()
        )


# --------------------------------------------------------------------------------------
# host cleanup (also after a crashed run)


def _cleanup_host(sysctls: Mapping[str, str]) -> None:
    """Undo everything a node does to the host except what lives in the (cached) containerd root."""
    # Container processes outlive their shims: kill what still runs in containerd's cgroups.
    _kill_cgroup_processes()
    # Shims outlive containerd; they carry our state dir in their command line (-address).
    for pid in _pids_matching(str(RUN_DIR / "containerd")):
        _kill_pid(pid, str(RUN_DIR / "containerd"), timeout=5)
    prefixes = (
        str(RUN_DIR),
        str(CACHE_DIR / "containerd") + "/",
        "/run/containerd/",
        "/run/netns/cni-",
        "/var/lib/kubelet/",
        "/tmp/multinic-cp-",
    )
    for point in _mounts_under(prefixes):
        # Only our node's mounts below the control-plane work dirs (kubelet pod volumes).
        if point.startswith("/tmp/multinic-cp-") and "/node/kubelet" not in point:
            continue
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    for bridge in (POD_BRIDGE, NODE_BRIDGE):
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
    for d in FIXED_DIRS:
        with contextlib.suppress(OSError):
            shutil.rmtree(d)
    # kubelet links container logs into /var/log/containers: drop our links (they point below a work dir
    # of ours, or nowhere once it is gone).
    links = Path("/var/log/containers")
    if links.is_dir():
        for link in links.iterdir():
            if link.is_symlink() and ("/multinic-cp-" in os.readlink(link) or not link.exists()):
                with contextlib.suppress(OSError):
                    link.unlink()
    shutil.rmtree(RUN_DIR / "containerd", ignore_errors=True)
    for d in ("/run/containerd", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods"):
        with contextlib.suppress(OSError):
            os.rmdir(d)  # only when empty: never someone else's
    _remove_cgroups()
    _remove_kube_iptables()
    for name, value in sysctls.items():
        if _read_sysctl(name) != value:
            _write_sysctl(name, value)


def cleanup_previous_run() -> bool:
    """Undo a crashed earlier node (state file left behind). Returns whether there was one.

    Call only while holding :data:`LOCK_PATH`.
    """
    try:
        state = json.loads(STATE_PATH.read_text())
    except FileNotFoundError:
        state = None
    except (OSError, ValueError):
        state = {}
    leftovers = bool(_pids_matching(str(RUN_DIR / "containerd"))) or any(
        Path(f"/sys/class/net/{b}").exists() for b in (POD_BRIDGE, NODE_BRIDGE)
    )
    if state is None and not leftovers:
        return False
    _log("cleaning up after a previous node that did not stop cleanly")
    for info in (state or {}).get("pids", {}).values():
        _kill_pid(int(info["pid"]), str(info["marker"]))
    _cleanup_host((state or {}).get("sysctls", {}))
    work_dir = (state or {}).get("work_dir")
    if work_dir and Path(work_dir).is_dir() and "/multinic-cp-" in work_dir:
        shutil.rmtree(Path(work_dir).parent, ignore_errors=True)
    _forget_state()
    return True


def _forget_state() -> None:
    with contextlib.suppress(FileNotFoundError):
        STATE_PATH.unlink()
    with contextlib.suppress(OSError):
        RUN_DIR.rmdir()


@contextlib.contextmanager
def running_node(control_plane: ControlPlane, **kwargs: Any) -> Iterator[Node]:
    node = Node(control_plane, **kwargs)
    node.start()
    try:
        yield node
    finally:
        node.stop()
