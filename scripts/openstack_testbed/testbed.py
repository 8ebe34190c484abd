#!/usr/bin/env python3
"""MultiNic OpenStack testbed: real Keystone, Glance, Placement, Neutron and
Nova (fake compute driver) on 127.0.0.1, with their own MariaDB and RabbitMQ.

Usage: scripts/openstack-testbed {up|seed|down|status|env|purge}

Standard library only: the services themselves run from a virtualenv kept
outside the checkout (default ~/.cache/multinic/openstack-venv), built from
the pinned constraints in this directory and rebuilt when they change.

Environment overrides:
  MULTINIC_OS_STATE   state dir (default ~/.cache/multinic/openstack-state)
  MULTINIC_OS_VENV    venv dir  (default ~/.cache/multinic/openstack-venv)
  MULTINIC_OS_PYTHON  Python 3.11 interpreter used to build the venv
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOME = Path(os.path.expanduser("~"))
STATE = Path(os.environ.get("MULTINIC_OS_STATE") or HOME / ".cache/multinic/openstack-state")
VENV = Path(os.environ.get("MULTINIC_OS_VENV") or HOME / ".cache/multinic/openstack-venv")
CONSTRAINTS = HERE / "constraints.txt"
REQUIREMENTS = HERE / "requirements.txt"
ML2_PKG = HERE / "ml2_bindall"

HOST = "127.0.0.1"
# Fixed ports below the kernel's ephemeral range (32768+), so that no client
# socket can be holding one of them when a service starts.
PORTS = {
    "mysql": 13306,
    "amqp": 25682,
    "rabbit_dist": 25683,
    "epmd": 24369,
    "keystone": 25000,
    "glance": 29292,
    "placement": 28778,
    "nova": 28774,
    "neutron": 29696,
}
DB_USER, DB_PASS = "openstack", "testbed"
ADMIN_USER, ADMIN_PASS, ADMIN_PROJECT = "admin", "admin", "admin"
REGION = "RegionOne"
DATABASES = ["keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "neutron"]

LOGS = STATE / "logs"
RUN = STATE / "run"
ETC = STATE / "etc"


def log(msg: str) -> None:
    print(f"[openstack-testbed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def heartbeat(label: str, usual: str, logfile: Path | None = None, every: float = 15.0):
    """Say every `every` seconds that a long step still moves: elapsed time, how long it usually takes and
    the last line of its log. A first run builds a venv of ~150 packages and migrates seven schemas;
    without this it sits silent for minutes and looks hung."""
    stop = threading.Event()
    start = time.time()
    log(f"{label}: usually {usual}" + (f" (log: {logfile})" if logfile else ""))

    def beat() -> None:
        while not stop.wait(every):
            last = ""
            if logfile is not None:
                with contextlib.suppress(OSError):
                    lines = [ln for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
                    last = lines[-1].strip()[:100] if lines else ""
            log(f"  ... {label}: {time.time() - start:.0f}s (usually {usual})" + (f" | {last}" if last else ""))

    thread = threading.Thread(target=beat, name=f"heartbeat-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def die(msg: str) -> None:
    log("ERROR: " + msg)
    sys.exit(1)


def run(cmd, *, env=None, check=True, quiet=True, logname=None, **kw):
    """Run a command, logging its output to LOGS/<logname>.log."""
    logname = logname or Path(str(cmd[0])).name
    LOGS.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(LOGS / f"{logname}.log", "ab") as fh:
        fh.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        fh.flush()
        if quiet:
            kw.update(stdout=fh, stderr=subprocess.STDOUT)
        res = subprocess.run([str(c) for c in cmd], env=full_env, **kw)
    if check and res.returncode != 0:
        die(f"command failed ({res.returncode}): {' '.join(map(str, cmd))}; see {LOGS / (logname + '.log')}")
    return res


def vbin(name: str) -> str:
    return str(VENV / "bin" / name)


# ----------------------------------------------------------------- venv ----


def venv_hash() -> str:
    h = hashlib.sha256()
    for p in [CONSTRAINTS, REQUIREMENTS, *ml2_files()]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def ml2_files() -> list[Path]:
    return [ML2_PKG / "pyproject.toml", *sorted((ML2_PKG / "multinic_testbed_ml2").glob("*.py"))]


def find_python() -> str:
    cand = [
        os.environ.get("MULTINIC_OS_PYTHON"),
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
        shutil.which("python3.11"),
    ]
    for c in cand:
        if c and Path(c).exists():
            return c
    die("no Python 3.11 found; set MULTINIC_OS_PYTHON")
    return ""


def ensure_venv() -> None:
    want = venv_hash()
    marker = VENV / ".multinic-constraints-hash"
    if marker.exists() and marker.read_text().strip() == want and (VENV / "bin" / "nova-compute").exists():
        log(f"venv up to date: {VENV}")
        return
    t0 = time.time()
    log(f"building venv {VENV} (constraints changed or venv missing)")
    if VENV.exists():
        shutil.rmtree(VENV)
    run([find_python(), "-m", "venv", VENV], logname="venv")
    pip = [vbin("python"), "-m", "pip", "--disable-pip-version-check"]
    reqs = [line.strip() for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    with heartbeat("installing OpenStack from PyPI", "1.5 min with a warm pip cache, 4-8 min cold", LOGS / "venv.log"):
        run(["nice", "-n", "19", *pip, "install", "-q", "-U", "pip", "setuptools", "wheel"], logname="venv")
        run(["nice", "-n", "19", *pip, "install", "-c", CONSTRAINTS, *reqs], logname="venv")
    # Build the driver from a copy: pip leaves build/ and egg-info behind.
    tmp = Path(tempfile.mkdtemp(prefix="multinic-ml2-"))
    try:
        for f in ml2_files():
            dst = tmp / f.relative_to(ML2_PKG)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
        run(["nice", "-n", "19", *pip, "install", "--no-deps", "--no-build-isolation", tmp], logname="venv")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text(want + "\n")
    log(f"venv built in {time.time() - t0:.0f}s")


# ------------------------------------------------------- debian packages ---


def ensure_debs() -> None:
    missing = []
    if not shutil.which("mariadbd") and not Path("/usr/sbin/mariadbd").exists():
        missing.append("mariadb-server")
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        missing.append("rabbitmq-server")
    if not missing:
        return
    if os.geteuid() != 0:
        die(f"missing Debian packages {missing}; install them as root")
    log(f"installing Debian packages: {missing}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, logname="apt")
    run(["nice", "apt-get", "install", "-y", "-qq", *missing], env=env, logname="apt")


# ------------------------------------------------------------ processes ---


def pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def read_pid(name: str) -> int | None:
    """The live PID recorded for `name`, or None. The PID file holds the PID and the
    program that was started; a recycled PID running something else is not ours."""
    try:
        lines = pidfile(name).read_text().split()
        pid = int(lines[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    program = lines[1] if len(lines) > 1 else ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    if program and program not in cmdline:
        return None
    return pid


def spawn(name: str, cmd: list, env: dict | None = None) -> int:
    pid = read_pid(name)
    if pid:
        log(f"{name} already running (pid {pid})")
        return pid
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(LOGS / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(STATE),
        )
    pidfile(name).write_text(f"{proc.pid} {Path(str(cmd[0])).name}\n")
    log(f"started {name} (pid {proc.pid})")
    return proc.pid


def stop(name: str, timeout: float = 20.0) -> None:
    pid = read_pid(name)
    if not pid:
        pidfile(name).unlink(missing_ok=True)
        return
    log(f"stopping {name} (pid {pid})")
    # Each service runs in its own session: signal its whole process group.
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline and read_pid(name):
            time.sleep(0.2)
        if not read_pid(name):
            break
    pidfile(name).unlink(missing_ok=True)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def wait_for(desc: str, pred, timeout: float = 120.0, proc: str | None = None, interval: float = 0.5) -> None:
    start = time.time()
    deadline = start + timeout
    next_note = start + 15
    while time.time() < deadline:
        with contextlib.suppress(Exception):  # keep polling
            if pred():
                return
        if time.time() >= next_note:
            log(f"  ... still waiting for {desc}: {time.time() - start:.0f}s of at most {timeout:.0f}s")
            next_note += 15
        if proc and not read_pid(proc):
            die(f"{proc} exited while waiting for {desc}; see {LOGS / (proc + '.out')} and {LOGS}/")
        time.sleep(interval)
    die(f"timed out after {timeout:.0f}s waiting for {desc}; see {LOGS}/")


def http_up(port: int, path: str = "/") -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{HOST}:{port}{path}",
            timeout=5,
        ) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except Exception:
        return False


# -------------------------------------------------------------- mariadb ---


def mysql_sock() -> Path:
    return STATE / "mysql" / "mysqld.sock"


def mysql_cli(sql: str) -> None:
    run(["mariadb", "--no-defaults", f"--socket={mysql_sock()}", "-uroot", "-e", sql], logname="mysql-client")


def start_mysql() -> None:
    datadir = STATE / "mysql" / "data"
    if not (datadir / "mysql").exists():
        log("initialising MariaDB datadir")
        datadir.mkdir(parents=True, exist_ok=True)
        run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--user=root",
            ],
            logname="mysql-install",
        )
    spawn(
        "mysqld",
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={mysql_sock()}",
            f"--port={PORTS['mysql']}",
            f"--bind-address={HOST}",
            "--user=root",
            "--skip-name-resolve",
            f"--pid-file={STATE / 'mysql' / 'mysqld.pid'}",
            f"--log-error={LOGS / 'mysqld.log'}",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=400",
            "--innodb-flush-log-at-trx-commit=0",
            "--skip-log-bin",
            "--performance-schema=OFF",
            "--character-set-server=utf8mb4",
        ],
    )
    wait_for("MariaDB", lambda: port_open(PORTS["mysql"]) and mysql_sock().exists(), 60, proc="mysqld")
    marker = STATE / "mysql" / ".databases-created"
    if not marker.exists():
        stmts = [f"CREATE DATABASE IF NOT EXISTS {d} CHARACTER SET utf8mb4;" for d in DATABASES]
        stmts += [
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';",
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASS}';",
            f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'127.0.0.1';",
            f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'localhost';",
            "FLUSH PRIVILEGES;",
        ]
        mysql_cli(" ".join(stmts))
        marker.touch()


def db_url(name: str) -> str:
    return f"mysql+pymysql://{DB_USER}:{DB_PASS}@{HOST}:{PORTS['mysql']}/{name}?charset=utf8mb4"


# ------------------------------------------------------------- rabbitmq ---


# Erlang distribution listens on 0.0.0.0 unless told otherwise.
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


def rabbit_env() -> dict:
    base = STATE / "rabbitmq"
    return {
        "HOME": str(base),
        "RABBITMQ_NODENAME": "multinic-testbed@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(PORTS["amqp"]),
        "RABBITMQ_DIST_PORT": str(PORTS["rabbit_dist"]),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(LOGS / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": HOST,
        "ERL_EPMD_PORT": str(PORTS["epmd"]),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1 +A 4 " + LOOPBACK_DIST,
        "RABBITMQ_CTL_ERL_ARGS": "+S 1:1 " + LOOPBACK_DIST,
        "LANG": "C.UTF-8",
    }


def rabbitmqctl(*args, check=True, **kw):
    return run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-q", *args], env=rabbit_env(), check=check, logname="rabbitmqctl", **kw
    )


def start_rabbit() -> None:
    base = STATE / "rabbitmq"
    (base / "mnesia").mkdir(parents=True, exist_ok=True)
    (LOGS / "rabbitmq").mkdir(parents=True, exist_ok=True)
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq-env.conf").write_text("")
    (base / "advanced.config").write_text("[].\n")
    (base / "rabbitmq.conf").write_text(
        "loopback_users.guest = true\n"
        "vm_memory_high_watermark.relative = 0.2\n"
        "disk_free_limit.absolute = 50MB\n"
        "log.console = false\n"
        "log.file.level = warning\n"
    )
    cookie = base / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
    spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=rabbit_env())
    wait_for("RabbitMQ", lambda: port_open(PORTS["amqp"]), 90, proc="rabbitmq")
    rabbitmqctl("await_startup")
    ensure_notification_listener()


LISTENER_USER = "multinic-listener"


def listener_password() -> str:
    path = STATE / "rabbitmq" / "listener-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def notifications_url() -> str:
    """What a notification listener (the controller's OPENSTACK_NOTIFICATIONS_URL) connects with."""
    return f"amqp://{LISTENER_USER}:{listener_password()}@{HOST}:{PORTS['amqp']}/"


def ensure_notification_listener() -> None:
    """A least-privilege RabbitMQ user for notification listeners, and a cap on the shared queues.

    The user may create and bind only server-named queues (`amq.gen-*`) and read only from them and from
    the `nova` / `neutron` exchanges: it can listen, never publish or touch the services' own queues
    (checking that an exchange exists - a passive declare - needs no permission). The services publish
    to the queues `notifications.info` / `versioned_notifications.info` whether or not anyone consumes
    them; nothing does here, so a policy keeps the last 1,000 messages instead of letting them pile up.
    """
    users = rabbitmqctl("list_users", quiet=False, capture_output=True, text=True).stdout
    if not any(line.split()[:1] == [LISTENER_USER] for line in users.splitlines()):
        rabbitmqctl("add_user", LISTENER_USER, listener_password())
    rabbitmqctl(
        "set_permissions", "-p", "/", LISTENER_USER, r"^amq\.gen-.*$", r"^amq\.gen-.*$", r"^(amq\.gen-.*|nova|neutron)$"
    )
    rabbitmqctl(
        "set_policy",
        "--apply-to",
        "queues",
        "notifications-cap",
        r"^(versioned_)?notifications\.",
        '{"max-length": 1000, "overflow": "drop-head"}',
    )


def stop_rabbit() -> None:
    if read_pid("rabbitmq"):
        rabbitmqctl("shutdown", check=False)
    stop("rabbitmq")
    # epmd was started by the Erlang VM on our private port; end it too.
    epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
    if port_open(PORTS["epmd"]) and Path(epmd).exists():
        subprocess.run(
            [epmd, "-port", str(PORTS["epmd"]), "-kill"],
            env={**os.environ, **rabbit_env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# --------------------------------------------------------------- config ---


def url(service: str, suffix: str = "") -> str:
    return f"http://{HOST}:{PORTS[service]}{suffix}"


def auth_section(name: str) -> str:
    return f"""[{name}]
auth_url = {url("keystone")}
auth_type = password
username = {ADMIN_USER}
password = {ADMIN_PASS}
project_name = {ADMIN_PROJECT}
user_domain_name = Default
project_domain_name = Default
region_name = {REGION}
"""


def authtoken() -> str:
    return auth_section("keystone_authtoken") + f"www_authenticate_uri = {url('keystone')}\nservice_type = %s\n"


def transport() -> str:
    return f"rabbit://guest:guest@{HOST}:{PORTS['amqp']}/"


def notifications_section() -> str:
    """Nova and Neutron publish notifications to their exchanges (`nova`, `neutron`) on the topic
    `notifications` (routing key `notifications.info`); Nova's interface attach/detach events exist only in
    the versioned format (topic `versioned_notifications`), hence `notification_format = both` for Nova."""
    return "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = notifications\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_configs() -> None:
    lock = STATE / "lock"
    lock.mkdir(parents=True, exist_ok=True)
    venv_etc = VENV / "etc"

    write(
        ETC / "keystone/keystone.conf",
        f"""[DEFAULT]
log_file = {LOGS}/keystone.log
[database]
connection = {db_url("keystone")}
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {STATE}/keystone/fernet-keys
max_active_keys = 3
[fernet_receipts]
key_repository = {STATE}/keystone/fernet-receipts
[credential]
key_repository = {STATE}/keystone/credential-keys
[cache]
enabled = false
""",
    )

    (STATE / "glance/images").mkdir(parents=True, exist_ok=True)
    (ETC / "glance").mkdir(parents=True, exist_ok=True)
    shutil.copy(venv_etc / "glance/glance-api-paste.ini", ETC / "glance/glance-api-paste.ini")
    write(
        ETC / "glance/glance-api.conf",
        f"""[DEFAULT]
log_file = {LOGS}/glance.log
enabled_backends = fs:file
workers = 1
[database]
connection = {db_url("glance")}
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {STATE}/glance/images
[os_glance_staging_store]
filesystem_store_datadir = {STATE}/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = {STATE}/glance/tasks
[paste_deploy]
flavor = keystone
config_file = {ETC}/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = {lock}
{authtoken() % "image"}""",
    )

    write(
        ETC / "placement/placement.conf",
        f"""[DEFAULT]
log_file = {LOGS}/placement.log
[api]
auth_strategy = keystone
[placement_database]
connection = {db_url("placement")}
{authtoken() % "placement"}""",
    )

    (ETC / "neutron").mkdir(parents=True, exist_ok=True)
    shutil.copy(venv_etc / "neutron/api-paste.ini", ETC / "neutron/api-paste.ini")
    write(
        ETC / "neutron/neutron.conf",
        f"""[DEFAULT]
log_file = {LOGS}/neutron-%s.log
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = {transport()}
api_paste_config = {ETC}/neutron/api-paste.ini
state_path = {STATE}/neutron
host = testbed
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
pagination_max_limit = 2
global_physnet_mtu = 1500
dhcp_agent_notification = false
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
[database]
connection = {db_url("neutron")}
[oslo_concurrency]
lock_path = {lock}
{notifications_section()}
{auth_section("nova")}endpoint_type = public
{authtoken() % "network"}""",
    )
    write(
        ETC / "neutron/ml2_conf.ini",
        """[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = multinic_bindall
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200
[ml2_type_vxlan]
vni_ranges = 1:1000
""",
    )

    (ETC / "nova").mkdir(parents=True, exist_ok=True)
    shutil.copy(venv_etc / "nova/api-paste.ini", ETC / "nova/api-paste.ini")
    (STATE / "nova/instances").mkdir(parents=True, exist_ok=True)
    write(
        ETC / "nova/nova.conf",
        f"""[DEFAULT]
log_file = {LOGS}/nova-%s.log
transport_url = {transport()}
compute_driver = fake.FakeDriverWithoutFakeNodes
host = testbed-compute
my_ip = {HOST}
state_path = {STATE}/nova
instances_path = {STATE}/nova/instances
osapi_compute_workers = 1
enabled_apis = osapi_compute
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
reserved_host_memory_mb = 0
heal_instance_info_cache_interval = -1
[api]
auth_strategy = keystone
max_limit = 2
[wsgi]
api_paste_config = {ETC}/nova/api-paste.ini
[api_database]
connection = {db_url("nova_api")}
[database]
connection = {db_url("nova")}
[scheduler]
discover_hosts_in_cells_interval = 5
workers = 1
[conductor]
workers = 1
[vnc]
enabled = false
[oslo_concurrency]
lock_path = {lock}
{notifications_section()}
[notifications]
notification_format = both
[quota]
driver = nova.quota.NoopQuotaDriver
[glance]
region_name = {REGION}
{auth_section("placement")}
{auth_section("neutron")}
{authtoken() % "compute"}""",
    )


def nova_conf(kind: str) -> str:
    """nova.conf with the log file named for one process."""
    src = (ETC / "nova/nova.conf").read_text().replace("nova-%s.log", f"nova-{kind}.log")
    if kind == "compute":
        # nova-compute must not touch the databases (it goes through the conductor); with the
        # connections configured it logs "No DB access allowed in nova-compute" tracebacks.
        src = "\n".join(line for line in src.splitlines() if not line.startswith("connection = mysql")) + "\n"
    dst = ETC / f"nova/nova-{kind}.conf"
    dst.write_text(src)
    return str(dst)


def neutron_conf(kind: str) -> str:
    src = (ETC / "neutron/neutron.conf").read_text()
    dst = ETC / f"neutron/neutron-{kind}.conf"
    dst.write_text(src.replace("neutron-%s.log", f"neutron-{kind}.log"))
    return str(dst)


# ------------------------------------------------------------ keystone ---


def uwsgi(name: str, module: str, port: int, env: dict) -> None:
    spawn(
        name,
        [
            vbin("uwsgi"),
            "--master",
            "--die-on-term",
            "--need-app",
            "--enable-threads",
            "--lazy-apps",
            "--processes",
            "1",
            "--threads",
            "2",
            "--http-socket",
            f"{HOST}:{port}",
            "--module",
            f"{module}:application",
            "--buffer-size",
            "65535",
            "--hook-master-start",
            "unix_signal:15 gracefully_kill_them_all",
            "--add-header",
            "Connection: close",
            "--disable-logging",
            "--worker-reload-mercy",
            "5",
            "--reload-mercy",
            "5",
        ],
        env=env,
    )


def once(marker_name: str, fn, logname: str) -> None:
    """Run a setup step once per venv build: a rebuilt venv (new releases) re-runs the
    schema syncs, which are upgrades and idempotent."""
    marker = STATE / "markers" / marker_name
    want = venv_hash()
    if marker.exists() and marker.read_text().strip() == want:
        return
    with heartbeat(f"first-time setup {marker_name}", "10-90 s", LOGS / f"{logname}.log"):
        fn()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(want + "\n")


def keystone_setup() -> None:
    conf = ["--config-file", ETC / "keystone/keystone.conf"]
    km = vbin("keystone-manage")

    def sync():
        log("keystone db_sync + keys + bootstrap")
        run([km, *conf, "db_sync"], logname="keystone-manage")
        for sub, step in (("fernet-keys", "fernet_setup"), ("credential-keys", "credential_setup")):
            keys = STATE / "keystone" / sub
            keys.mkdir(parents=True, exist_ok=True)
            keys.chmod(0o700)
            if not any(keys.iterdir()):
                run([km, *conf, step, "--keystone-user", "root", "--keystone-group", "root"], logname="keystone-manage")
        (STATE / "keystone" / "fernet-receipts").mkdir(parents=True, exist_ok=True)
        run(
            [
                km,
                *conf,
                "bootstrap",
                "--bootstrap-password",
                ADMIN_PASS,
                "--bootstrap-username",
                ADMIN_USER,
                "--bootstrap-project-name",
                ADMIN_PROJECT,
                "--bootstrap-admin-url",
                url("keystone", "/v3"),
                "--bootstrap-internal-url",
                url("keystone", "/v3"),
                "--bootstrap-public-url",
                url("keystone", "/v3"),
                "--bootstrap-region-id",
                REGION,
            ],
            logname="keystone-manage",
        )

    once("keystone-db", sync, "keystone-manage")


# ------------------------------------------------------- keystone API ---


class Keystone:
    def __init__(self):
        self.token = None
        self.project_id = None

    def _req(self, method, path, body=None, token=True):
        req = urllib.request.Request(  # noqa: S310 - loopback testbed URLs
            url("keystone", "/v3" + path),
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        if token:
            req.add_header("X-Auth-Token", self.token)
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback testbed URLs
            data = r.read()
            return r, (json.loads(data) if data else None)

    def login(self):
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": ADMIN_USER, "domain": {"name": "Default"}, "password": ADMIN_PASS}},
                },
                "scope": {"project": {"name": ADMIN_PROJECT, "domain": {"name": "Default"}}},
            }
        }
        r, data = self._req("POST", "/auth/tokens", body, token=False)
        self.token = r.headers["X-Subject-Token"]
        self.project_id = data["token"]["project"]["id"]
        return data

    def ensure_service_role(self):
        """Give the admin user the `service` role: the services talk to each
        other as admin, and Nova sends its token as X-Service-Token too,
        which keystonemiddleware only accepts from a `service` role holder."""
        _, data = self._req("GET", "/roles?name=service")
        if data["roles"]:
            rid = data["roles"][0]["id"]
        else:
            _, d = self._req("POST", "/roles", {"role": {"name": "service"}})
            rid = d["role"]["id"]
        _, data = self._req("GET", f"/users?name={ADMIN_USER}")
        uid = data["users"][0]["id"]
        self._req("PUT", f"/projects/{self.project_id}/users/{uid}/roles/{rid}")

    def ensure_service(self, stype, name, public_url):
        _, data = self._req("GET", f"/services?type={stype}")
        if data["services"]:
            sid = data["services"][0]["id"]
        else:
            _, d = self._req("POST", "/services", {"service": {"type": stype, "name": name, "enabled": True}})
            sid = d["service"]["id"]
        _, data = self._req("GET", f"/endpoints?service_id={sid}")
        have = {e["interface"]: e for e in data["endpoints"]}
        for iface in ("public", "internal", "admin"):
            e = have.get(iface)
            if e and e["url"] == public_url:
                continue
            if e:
                self._req("DELETE", f"/endpoints/{e['id']}")
            self._req(
                "POST",
                "/endpoints",
                {
                    "endpoint": {
                        "service_id": sid,
                        "interface": iface,
                        "url": public_url,
                        "region_id": REGION,
                        "enabled": True,
                    }
                },
            )


CATALOG = [
    ("identity", "keystone", lambda: url("keystone", "/v3")),
    ("image", "glance", lambda: url("glance")),
    ("placement", "placement", lambda: url("placement")),
    ("network", "neutron", lambda: url("neutron")),
    ("compute", "nova", lambda: url("nova", "/v2.1")),
]


# ------------------------------------------------------------- up/down ---

SERVICES_ORDER = [
    "keystone",
    "glance",
    "placement",
    "neutron-api",
    "neutron-rpc",
    "nova-api",
    "nova-conductor",
    "nova-scheduler",
    "nova-compute",
    "rabbitmq",
    "mysqld",
]


def cmd_up() -> None:
    t0 = time.time()
    for d in (STATE, LOGS, RUN, ETC):
        d.mkdir(parents=True, exist_ok=True)
    ensure_debs()
    ensure_venv()
    t_venv = time.time()
    start_mysql()
    start_rabbit()
    write_configs()
    keystone_setup()
    uwsgi(
        "keystone",
        "keystone.wsgi.api",
        PORTS["keystone"],
        {"OS_KEYSTONE_CONFIG_FILES": str(ETC / "keystone/keystone.conf")},
    )

    # Schema syncs for the other services while keystone starts.
    def glance_sync():
        log("glance db_sync")
        run(
            [vbin("glance-manage"), "--config-file", ETC / "glance/glance-api.conf", "db_sync"], logname="glance-manage"
        )

    def placement_sync():
        log("placement db sync")
        run(
            [vbin("placement-manage"), "--config-file", ETC / "placement/placement.conf", "db", "sync"],
            logname="placement-manage",
        )

    def neutron_sync():
        log("neutron db upgrade")
        run(
            [
                vbin("neutron-db-manage"),
                "--config-file",
                ETC / "neutron/neutron.conf",
                "--config-file",
                ETC / "neutron/ml2_conf.ini",
                "upgrade",
                "heads",
            ],
            logname="neutron-db-manage",
        )

    once("placement-db", placement_sync, "placement-manage")
    once("neutron-db", neutron_sync, "neutron-db-manage")
    wait_for("keystone", lambda: http_up(PORTS["keystone"], "/v3"), 120, proc="keystone")
    ks = Keystone()
    ks.login()
    ks.ensure_service_role()
    for stype, name, u in CATALOG:
        ks.ensure_service(stype, name, u())
    write_env(ks.project_id)

    uwsgi("placement", "placement.wsgi.api", PORTS["placement"], {"OS_PLACEMENT_CONFIG_DIR": str(ETC / "placement")})
    uwsgi(
        "neutron-api",
        "neutron.wsgi.api",
        PORTS["neutron"],
        {
            "OS_NEUTRON_CONFIG_DIR": str(ETC / "neutron"),
            "OS_NEUTRON_CONFIG_FILES": f"{Path(neutron_conf('api')).name};ml2_conf.ini",
        },
    )
    spawn(
        "neutron-rpc",
        [
            vbin("neutron-rpc-server"),
            "--config-file",
            neutron_conf("rpc"),
            "--config-file",
            ETC / "neutron/ml2_conf.ini",
        ],
    )

    once("glance-db", glance_sync, "glance-manage")
    uwsgi("glance", "glance.wsgi.api", PORTS["glance"], {"OS_GLANCE_CONFIG_DIR": str(ETC / "glance")})

    def nova_sync():
        log("nova api_db sync / cells / db sync")
        nm = [vbin("nova-manage"), "--config-file", nova_conf("manage")]
        run([*nm, "api_db", "sync"], logname="nova-manage")
        run([*nm, "cell_v2", "map_cell0", "--database_connection", db_url("nova_cell0")], logname="nova-manage")
        res = run([*nm, "cell_v2", "list_cells"], logname="nova-manage", quiet=False, capture_output=True, text=True)
        if " cell1 " not in res.stdout:
            run([*nm, "cell_v2", "create_cell", "--name", "cell1", "--verbose"], logname="nova-manage")
        run([*nm, "db", "sync"], logname="nova-manage")

    once("nova-db", nova_sync, "nova-manage")

    nova_env = {"OS_NOVA_CONFIG_DIR": str(ETC / "nova"), "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova-api.conf"}
    nova_conf("api")
    uwsgi("nova-api", "nova.wsgi.osapi_compute", PORTS["nova"], nova_env)
    for kind in ("conductor", "scheduler", "compute"):
        spawn(f"nova-{kind}", [vbin(f"nova-{kind}"), "--config-file", nova_conf(kind)])

    for name, port, path in (
        ("placement", PORTS["placement"], "/"),
        ("neutron-api", PORTS["neutron"], "/"),
        ("glance", PORTS["glance"], "/versions"),
        ("nova-api", PORTS["nova"], "/"),
    ):
        wait_for(name, lambda p=port, q=path: http_up(p, q), 180, proc=name)
    wait_compute(ks)
    dt = time.time() - t0
    log(f"testbed up in {dt:.0f}s (venv check/build {t_venv - t0:.0f}s); env: {sys.argv[0]} env")
    (STATE / "last-up-seconds").write_text(f"{dt:.1f}\n")


def api_get(ks: Keystone, service: str, path: str, headers=None):
    req = urllib.request.Request(url(service, path))  # noqa: S310 - loopback testbed URLs
    req.add_header("X-Auth-Token", ks.token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback testbed URLs
        return json.loads(r.read())


def wait_compute(ks: Keystone) -> None:
    """Wait until nova-compute is up and its host is mapped to cell1."""

    def compute_up():
        data = api_get(ks, "nova", "/v2.1/os-services?binary=nova-compute")
        return any(s["state"] == "up" for s in data["services"])

    wait_for("nova-compute service up", compute_up, 180, proc="nova-compute", interval=2)

    def hypervisor():
        data = api_get(ks, "nova", "/v2.1/os-hypervisors")
        return bool(data["hypervisors"])

    deadline = time.time() + 120
    while time.time() < deadline:
        run(
            [vbin("nova-manage"), "--config-file", nova_conf("manage"), "cell_v2", "discover_hosts"],
            logname="nova-manage",
        )
        with contextlib.suppress(Exception):
            if hypervisor():
                break
        time.sleep(2)
    else:
        die("compute host never showed up as a hypervisor")

    def rp():
        req = urllib.request.Request(url("placement", "/resource_providers"))  # noqa: S310 - loopback testbed URLs
        req.add_header("X-Auth-Token", ks.token)
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback testbed URLs
            return bool(json.loads(r.read())["resource_providers"])

    wait_for("compute resource provider in placement", rp, 120, interval=2)


def write_env(project_id: str) -> None:
    info = {
        "OS_AUTH_URL": url("keystone", "/v3"),
        "OS_USERNAME": ADMIN_USER,
        "OS_PASSWORD": ADMIN_PASS,
        "OS_PROJECT_ID": project_id,
        "OS_PROJECT_NAME": ADMIN_PROJECT,
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": REGION,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_INTERFACE": "public",
        "OS_COMPUTE_ENDPOINT": url("nova", "/v2.1"),
        "OS_NETWORK_ENDPOINT": url("neutron"),
        "OS_IMAGE_ENDPOINT": url("glance"),
        "MULTINIC_OS_STATE": str(STATE),
        "MULTINIC_OS_VENV": str(VENV),
        "MULTINIC_OS_NOVA_MAX_LIMIT": "2",
        "MULTINIC_OS_NEUTRON_PAGE_LIMIT": "2",
        # Nova and Neutron notifications (exchanges nova/neutron, topics notifications, versioned_notifications)
        "MULTINIC_OS_NOTIFICATIONS_URL": notifications_url(),
    }
    (STATE / "env.json").write_text(json.dumps(info, indent=2) + "\n")


def cmd_env() -> None:
    f = STATE / "env.json"
    if not f.exists():
        die(f"testbed has never been brought up (no {f}); run: up")
    for k, v in json.loads(f.read_text()).items():
        print(f"export {k}={shlex.quote(str(v))}")


def cmd_down() -> None:
    for name in SERVICES_ORDER:
        if name == "rabbitmq":
            stop_rabbit()
        elif name == "mysqld":
            stop("mysqld", timeout=60)
        else:
            stop(name)
    log("testbed down")


def cmd_status() -> int:
    bad = 0
    ports = {
        "keystone": "keystone",
        "glance": "glance",
        "placement": "placement",
        "neutron-api": "neutron",
        "nova-api": "nova",
        "rabbitmq": "amqp",
        "mysqld": "mysql",
    }
    for name in reversed(SERVICES_ORDER):
        pid = read_pid(name)
        p = ports.get(name)
        listening = port_open(PORTS[p]) if p else None
        state = "up" if pid and listening is not False else "DOWN"
        bad += state != "up"
        extra = f" port {PORTS[p]}" if p else ""
        print(f"{name:16s} {state:5s} pid={pid or '-'}{extra}")
    return 1 if bad else 0


def cmd_seed() -> None:
    if not (STATE / "env.json").exists() or not read_pid("nova-api"):
        die("testbed is not up; run: up")
    env = json.loads((STATE / "env.json").read_text())
    t0 = time.time()
    res = subprocess.run([vbin("python"), str(HERE / "seed.py")], env={**os.environ, **env})
    if res.returncode:
        die(f"seed failed ({res.returncode})")
    log(f"seeded in {time.time() - t0:.0f}s")


def cmd_purge() -> None:
    cmd_down()
    if STATE.exists():
        shutil.rmtree(STATE)
        log(f"removed {STATE}")


def main(argv) -> int:
    cmds = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
        "seed": cmd_seed,
        "purge": cmd_purge,
        "venv": ensure_venv,
    }
    if len(argv) != 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]]() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
