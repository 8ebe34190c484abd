"""`multinic-ctrl plan` against the OpenStack simulator and a real MariaDB: shows the diff, writes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from multinic_ctrl.cli import main
from multinic_ctrl.controller.desired import desired_rows
from multinic_ctrl.db import Database, Repository
from multinic_ctrl.openstack import OpenStackClient
from tests.fakes.openstack.fixtures import running_simulator
from tests.fakes.openstack.tls import make_self_signed

pytestmark = pytest.mark.db


def _write_config(path: Path, auth_url: str, vms: list[str]) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "multinic.example.com/v1alpha1",
                "kind": "OpenstackConfig",
                "metadata": {"name": "cfg", "namespace": "ns"},
                "spec": {
                    "vmNames": vms,
                    "subnetName": "k8s-subnet",
                    "credentials": {
                        "authURL": auth_url,
                        "username": "admin",
                        "password": "admin",
                        "projectID": "your-project-id",
                        "domainName": "Default",
                    },
                },
            }
        )
    )


def _use_database(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    db = database.settings
    for key, value in {
        "DB_HOST": db.host,
        "DB_PORT": str(db.port),
        "DB_USER": db.user,
        "DB_PASSWORD": db.password,
        "DB_NAME": db.name,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("OPENSTACK_CA_BUNDLE", "OPENSTACK_INSECURE"):
        monkeypatch.delenv(key, raising=False)


async def test_plan_prints_the_diff_and_writes_nothing(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_database(monkeypatch, database)
    config = tmp_path / "cfg.yaml"
    async with running_simulator() as sim:
        async with OpenStackClient() as client:
            observed = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2"], "k8s-subnet")
        await Repository(database).apply("ns", "cfg", desired_rows(observed))
        _write_config(config, sim.auth_url, ["test-vm-1", "test-vm-3", "test-vm-9"])
        before = await Repository(database).interfaces_of("ns", "cfg")

        code = await asyncio.to_thread(main, ["plan", "-f", str(config)])
        text = capsys.readouterr().out
        assert code == 0
        assert "Plan for OpenstackConfig ns/cfg:" in text
        assert "+ 7e3a9f1c-4444-4d2b-b6c8-000000000003 fa:16:3e:00:01:03 192.168.100.13 mtu=1450" in text
        assert "- 7e3a9f1c-4444-4d2b-b6c8-000000000002" in text
        assert "= 7e3a9f1c-4444-4d2b-b6c8-000000000001" in text
        assert "VMs not found: test-vm-9" in text
        assert "1 to add, 0 to change, 1 to remove, 1 unchanged." in text

        code = await asyncio.to_thread(main, ["plan", "-f", str(config), "-o", "json"])
        document = json.loads(capsys.readouterr().out)
        assert code == 0 and document["missingVMs"] == ["test-vm-9"]
        assert [e["port"] for e in document["nodes"]["test-vm-3"]["added"]] == ["7e3a9f1c-4444-4d2b-b6c8-000000000003"]
        assert await Repository(database).interfaces_of("ns", "cfg") == before


async def test_plan_reports_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Something\n")
    assert await asyncio.to_thread(main, ["plan", "-f", str(bad), "--db-host", "127.0.0.1"]) == 1
    assert "must contain exactly one OpenstackConfig" in capsys.readouterr().err


async def test_plan_trusts_openstack_exactly_as_run_does(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` must honour OPENSTACK_CA_BUNDLE / OPENSTACK_INSECURE (and their flags) like `run`: an OpenStack
    behind a private CA that the controller reaches must not look broken to the operator planning a change."""
    _use_database(monkeypatch, database)
    cert = make_self_signed(tmp_path)
    config = tmp_path / "cfg.yaml"
    async with running_simulator(ssl_context=cert.server_context()) as sim:
        _write_config(config, sim.auth_url, ["test-vm-1"])
        plan = ["plan", "-f", str(config)]

        assert await asyncio.to_thread(main, plan) == 1
        err = capsys.readouterr().err
        assert err.startswith("multinic-ctrl plan: ") and "TLS error" in err
        assert "CERTIFICATE_VERIFY_FAILED" in err
        assert sim.calls() == 0

        assert await asyncio.to_thread(main, [*plan, "--openstack-ca-bundle", str(cert.cert_file)]) == 0
        assert "1 to add, 0 to change, 0 to remove, 0 unchanged." in capsys.readouterr().out

        monkeypatch.setenv("OPENSTACK_CA_BUNDLE", str(cert.cert_file))
        assert await asyncio.to_thread(main, plan) == 0
        assert "+ 7e3a9f1c-4444-4d2b-b6c8-000000000001" in capsys.readouterr().out

        monkeypatch.delenv("OPENSTACK_CA_BUNDLE")
        assert await asyncio.to_thread(main, [*plan, "--openstack-insecure", "true"]) == 0
        assert "1 to add" in capsys.readouterr().out
