"""`scripts/demo --keep` ended by SIGTERM (as `timeout`, a CI runner or a service manager ends it) takes
every process it started down with it: the controller, etcd and kube-apiserver (issue 14, item 6).

Here rather than in e2e because, like the rest of this tier, it runs whole programs as a user would and
needs the local MariaDB and the control-plane binaries; it does not use the node.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.control_plane import REPO_ROOT


def _children(pid: int) -> set[int]:
    """All live descendants of ``pid`` (from /proc, any session)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_keep_stops_everything_it_started_on_sigterm() -> None:
    demo = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo"), "--keep"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            if "press Ctrl-C" in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(240), "demo never reached --keep:\n" + "".join(output[-40:])
        started = _children(demo.pid)
        text = "".join(output)
        work_dir = re.search(r"/tmp/multinic-cp-[a-z0-9_]+", text)
        assert work_dir, text
        commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started if _alive(pid)}
        assert any(b"multinic_ctrl" in c for c in commands.values()), commands
        assert any(b"kube-apiserver" in c for c in commands.values()), commands

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(90) == 130
        reader.join(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in started):
            time.sleep(0.2)
        survivors = {pid: commands.get(pid, b"")[:120] for pid in started if _alive(pid)}
        assert survivors == {}, survivors
        assert not Path(work_dir.group(0)).exists()
        assert "everything the demo started has been stopped" in "".join(output)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
