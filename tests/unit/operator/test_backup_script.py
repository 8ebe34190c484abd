"""The backup Job's script, run with bash against a stand-in `mariadb-dump`: pipefail, the private option file,
input checks and retention pruning. (The db tier runs it against a real MariaDB.)"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import stat
import subprocess
from pathlib import Path

import pytest

from multinic_ctrl.operator.backup_script import SCRIPT

STUB = r"""#!/bin/bash
# Stand-in for mariadb-dump: records its arguments and the option file it was given.
printf '%s\n' "$@" > "$STUB_DIR/args"
cnf="${1#--defaults-extra-file=}"
[ "$cnf" != "$1" ] || { echo "first argument must be --defaults-extra-file" >&2; exit 9; }
cp -- "$cnf" "$STUB_DIR/cnf"
stat -c %a -- "$cnf" > "$STUB_DIR/cnf-mode"
echo "-- dump of ${@: -1}"
echo "INSERT INTO t VALUES (1);"
if [ -n "${STUB_FAIL:-}" ]; then echo "mariadb-dump: Got error: 2013: Lost connection" >&2; exit 2; fi
"""


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


NOW = dt.datetime.now(dt.UTC)


class Runner:
    def __init__(self, tmp: Path) -> None:
        self.stub_dir = tmp / "stub"
        self.stub_dir.mkdir()
        dump = self.stub_dir / "mariadb-dump"
        dump.write_text(STUB)
        dump.chmod(0o755)
        self.backups = tmp / "backups"
        self.backups.mkdir()
        self.password_file = tmp / "password"
        self.password_file.write_text("s3cret-Pw\n")

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": f"{self.stub_dir}:{os.environ['PATH']}",
            "STUB_DIR": str(self.stub_dir),
            "BACKUP_DIR": str(self.backups),
            "DB_HOST": "multinic-mariadb.multinic-system.svc",
            "DB_PORT": "3306",
            "DB_USER": "multinic",
            "DB_NAME": "multinic",
            "DB_PASSWORD_FILE": str(self.password_file),
            "TMPDIR": str(self.stub_dir.parent),
        }
        return subprocess.run(
            ["/bin/bash", "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True, timeout=30, check=False
        )

    def files(self) -> list[str]:
        return sorted(p.name for p in self.backups.iterdir())

    def seed(self, *ages: dt.timedelta, db: str = "multinic") -> list[str]:
        names = [f"{db}-{stamp(NOW - age)}.sql.gz" for age in ages]
        for name in names:
            (self.backups / name).write_bytes(gzip.compress(b"old"))
        return names


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def test_a_successful_backup(runner: Runner) -> None:
    result = runner.run()
    assert result.returncode == 0, result.stderr
    (name,) = runner.files()
    assert name.startswith("multinic-") and name.endswith(".sql.gz")
    content = gzip.decompress((runner.backups / name).read_bytes()).decode()
    assert content == "-- dump of multinic\nINSERT INTO t VALUES (1);\n"
    args = (runner.stub_dir / "args").read_text().splitlines()
    assert "--single-transaction" in args and args[-1] == "multinic"
    assert "--host=multinic-mariadb.multinic-system.svc" in args and "--user=multinic" in args
    assert not any("s3cret" in a for a in args)  # never on the command line
    assert (runner.stub_dir / "cnf").read_text() == '[client]\npassword="s3cret-Pw"\n'
    assert (runner.stub_dir / "cnf-mode").read_text().strip() == "600"
    assert "wrote " + name in result.stderr


def test_a_failed_dump_fails_the_job_and_leaves_nothing(runner: Runner) -> None:
    old = runner.seed(*(dt.timedelta(days=d) for d in range(1, 10)))
    result = runner.run(STUB_FAIL="1", RETENTION_KEEP_LAST="1")
    assert result.returncode != 0
    assert runner.files() == sorted(old)  # no new file, no .partial, and nothing pruned after a failure


def test_the_option_file_is_removed_afterwards(runner: Runner, tmp_path: Path) -> None:
    assert runner.run().returncode == 0
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("tmp.")]
    assert leftovers == []


@pytest.mark.parametrize(
    ("password", "line"),
    [
        ('a"b', 'password="a\\"b"'),
        ("a\\b", 'password="a\\\\b"'),
        ("$(reboot)`id`", 'password="$(reboot)`id`"'),
        ("with space", 'password="with space"'),
    ],
)
def test_passwords_are_quoted_for_the_option_file(runner: Runner, password: str, line: str) -> None:
    runner.password_file.write_text(password)
    assert runner.run().returncode == 0
    assert (runner.stub_dir / "cnf").read_text().splitlines()[1] == line


def test_a_password_with_a_line_break_is_refused(runner: Runner) -> None:
    runner.password_file.write_text("two\nlines")
    result = runner.run()
    assert result.returncode == 2 and "line break" in result.stderr
    assert "two" not in result.stderr
    assert not (runner.stub_dir / "args").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_NAME", "x;touch /tmp/pwned"),
        ("DB_NAME", "../etc"),
        ("DB_USER", "a b"),
        ("DB_HOST", "host;id"),
        ("DB_PORT", "33x"),
        ("RETENTION_KEEP_LAST", "1; rm -rf /"),
        ("RETENTION_MAX_AGE_MINUTES", "-5"),
        ("DB_NAME", ""),
    ],
)
def test_settings_are_rechecked(runner: Runner, name: str, value: str) -> None:
    result = runner.run(**{name: value})
    assert result.returncode != 0
    assert not (runner.stub_dir / "args").exists()
    assert runner.files() == []


def test_keep_last_prunes_the_oldest_and_only_own_files(runner: Runner) -> None:
    old = runner.seed(*(dt.timedelta(days=d) for d in (1, 2, 3, 4, 5)))
    foreign = ["notes.txt", "multinic-latest.sql.gz", "other_db-20200101T000000Z.sql.gz"]
    for name in foreign:
        (runner.backups / name).write_text("keep me")
    assert runner.run(RETENTION_KEEP_LAST="3").returncode == 0
    remaining = [f for f in runner.files() if f not in foreign]
    assert len(remaining) == 3
    assert sorted(old)[-2:] == sorted(remaining)[:2]  # the two newest old ones + the new one
    assert all((runner.backups / f).exists() for f in foreign)


def test_max_age_prunes_by_the_timestamp_in_the_name(runner: Runner) -> None:
    old, recent = runner.seed(dt.timedelta(days=10), dt.timedelta(days=1))
    assert runner.run(RETENTION_MAX_AGE_MINUTES=str(2 * 1440)).returncode == 0
    files = runner.files()
    assert old not in files and recent in files and len(files) == 2


def test_the_newest_backup_is_never_pruned(runner: Runner) -> None:
    runner.seed(dt.timedelta(days=3))
    assert runner.run(RETENTION_MAX_AGE_MINUTES="1", RETENTION_KEEP_LAST="1").returncode == 0
    (name,) = runner.files()
    assert gzip.decompress((runner.backups / name).read_bytes()).startswith(b"-- dump of")


def test_both_retention_rules_apply(runner: Runner) -> None:
    runner.seed(*(dt.timedelta(hours=h) for h in (1, 2, 3, 100)))
    assert runner.run(RETENTION_MAX_AGE_MINUTES=str(48 * 60), RETENTION_KEEP_LAST="3").returncode == 0
    assert len(runner.files()) == 3


def test_leftover_partials_of_killed_runs_are_removed(runner: Runner) -> None:
    stale = runner.backups / f".multinic-{stamp(NOW - dt.timedelta(days=2))}.sql.gz.partial"
    fresh = runner.backups / f".multinic-{stamp(NOW - dt.timedelta(hours=1))}.sql.gz.partial"  # its mtime is now
    for path in (stale, fresh):
        path.write_text("half")
    two_days_ago = (NOW - dt.timedelta(days=2)).timestamp()
    os.utime(stale, (two_days_ago, two_days_ago))
    assert runner.run().returncode == 0
    assert not stale.exists() and fresh.exists()


def test_backups_are_private(runner: Runner) -> None:
    assert runner.run().returncode == 0
    (name,) = runner.files()
    assert stat.S_IMODE((runner.backups / name).stat().st_mode) == 0o600
