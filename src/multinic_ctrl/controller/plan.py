"""`multinic-ctrl plan -f config.yaml`: what a reconcile would change, without changing anything.

Resolves the config against OpenStack (read-only, as always) and diffs the desired rows against MariaDB
(read-only transaction). Secret references are read from the cluster when a kubeconfig is available.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, TextIO

import yaml

from multinic_ctrl.controller.clients import openstack_client
from multinic_ctrl.controller.desired import desired_rows, rows_to_keep
from multinic_ctrl.controller.resources import SECRETS
from multinic_ctrl.controller.spec import decode_secret, parse_spec, resolve_credentials
from multinic_ctrl.db import Database, Repository, RowDiff
from multinic_ctrl.kube import KubeClient
from multinic_ctrl.settings import Settings


class PlanError(Exception):
    pass


def load_config(path: Path) -> dict[str, Any]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read {path}: {exc}") from None
    configs = [d for d in documents if isinstance(d, dict) and d.get("kind") == "OpenstackConfig"]
    if len(configs) != 1:
        raise PlanError(f"{path} must contain exactly one OpenstackConfig (found {len(configs)})")
    return configs[0]


async def plan(settings: Settings, path: Path, namespace: str | None) -> tuple[dict[str, Any], RowDiff, list[str]]:
    config = load_config(path)
    meta = config.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise PlanError("metadata.name is required")
    ns = namespace or meta.get("namespace") or "default"
    spec = parse_spec(config.get("spec"))
    secrets: dict[str, dict[str, str]] = {}
    if spec.secret_names():
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        async with await KubeClient.from_config(kubeconfig) as kube:
            for secret_name in spec.secret_names():
                secrets[secret_name] = decode_secret(await kube.get(SECRETS, secret_name, ns))
    credentials = resolve_credentials(spec, secrets)
    async with openstack_client(settings) as client:
        observation = await client.observe(credentials, spec.vm_names, spec.subnet_name)
    database = Database(settings.database)
    try:
        # The same keep set as a reconcile: rows of VMs whose state Nova cannot vouch for are not removals.
        diff = await Repository(database).plan(ns, name, desired_rows(observation), keep=rows_to_keep(observation))
    finally:
        await database.close()
    return {"namespace": ns, "name": name}, diff, list(observation.missing_vms)


def render(target: dict[str, Any], diff: RowDiff, missing: list[str], out: TextIO, *, as_json: bool) -> None:
    per_node: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))

    def row(r: Any) -> dict[str, Any]:
        return {"port": r.port_id, "mac": r.mac, "address": r.address, "mtu": r.mtu}

    for r in diff.added:
        per_node[r.node_name]["added"].append(row(r))
    for c in diff.changed:
        entry = {**row(c.new), "was": row(c.old), "reappliesNetplan": c.resets_netplan}
        per_node[c.new.node_name]["changed"].append(entry)
    for r in diff.removed:
        per_node[r.node_name]["removed"].append(row(r))
    for r in diff.unchanged:
        per_node[r.node_name]["unchanged"].append(row(r))
    for r, owner in diff.conflicts:
        per_node[r.node_name]["conflicts"].append({**row(r), "ownedBy": owner})
    if as_json:
        document = {
            "config": f"{target['namespace']}/{target['name']}",
            "missingVMs": missing,
            "nodes": {n: dict(v) for n, v in sorted(per_node.items())},
        }
        out.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return
    out.write(f"Plan for OpenstackConfig {target['namespace']}/{target['name']}:\n")
    signs = {"added": "+", "changed": "~", "removed": "-", "unchanged": "=", "conflicts": "!"}
    for node, groups in sorted(per_node.items()):
        out.write(f"  node {node}\n")
        for kind in ("added", "changed", "removed", "conflicts", "unchanged"):
            for entry in groups.get(kind, []):
                extra = ""
                if kind == "changed":
                    extra = " (netplan re-applied)" if entry["reappliesNetplan"] else " (status only)"
                if kind == "conflicts":
                    extra = f" (already managed by {entry['ownedBy']})"
                out.write(
                    f"    {signs[kind]} {entry['port']} {entry['mac']} {entry['address']} mtu={entry['mtu']}{extra}\n"
                )
    if missing:
        out.write(f"  VMs not found: {', '.join(missing)}\n")
    out.write(
        f"{len(diff.added)} to add, {len(diff.changed)} to change, {len(diff.removed)} to remove, "
        f"{len(diff.unchanged)} unchanged.\n"
    )
