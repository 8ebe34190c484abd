"""kubernetes-asyncio's generated client is imported lazily by MultiNic's processes (multinic_ctrl/lean_imports.py):
everything stays reachable under its usual name, and a process no longer loads ~800 modules it never uses.

Each check runs in a fresh interpreter: the test process itself imported the library eagerly long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from multinic_ctrl.lean_imports import reexports


def run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_processes_import_a_fraction_of_the_generated_client() -> None:
    found = run(
        """
        import json, resource, sys
        from multinic_ctrl import lean_imports
        installed = lean_imports.install()
        import multinic_ctrl.app, multinic_ctrl.controller.service, multinic_ctrl.operator.service
        models = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]
        apis = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.api.")]
        print(json.dumps({"installed": installed, "models": len(models), "apis": len(apis)}))
        """
    )
    assert found["installed"] is True
    assert found["models"] <= 10, found  # eagerly: 767
    assert found["apis"] <= 5, found  # eagerly: 65


def test_every_reexported_name_resolves_to_the_eager_object() -> None:
    found = run(
        """
        import importlib, json, pathlib
        from multinic_ctrl import lean_imports
        lean_imports.install()
        import kubernetes_asyncio
        from kubernetes_asyncio import client
        checked, wrong = 0, []
        for package in lean_imports.LAZY_PACKAGES:
            module = importlib.import_module(package)
            names = lean_imports.reexports(pathlib.Path(module.__file__).read_text())
            assert names, package
            for name, origin in names.items():
                if getattr(module, name) is not getattr(importlib.import_module(origin), name):
                    wrong.append(f"{package}.{name}")
                checked += 1
            assert set(module.__all__) == set(names)
        print(json.dumps({"checked": checked, "wrong": wrong, "version": client.__version__,
                          "same": kubernetes_asyncio.client is client}))
        """
    )
    assert found["wrong"] == []
    assert int(str(found["checked"])) > 1500
    assert found["same"] is True
    assert str(found["version"])[0].isdigit()


def test_the_library_still_finds_models_by_name() -> None:
    """ApiClient.deserialize looks model classes up by name in `kubernetes_asyncio.client.models`."""
    found = run(
        """
        import asyncio, json
        from multinic_ctrl import lean_imports
        lean_imports.install()
        from kubernetes_asyncio import client

        class Raw:
            def __init__(self, body): self.data = json.dumps(body)

        async def main():
            api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
            try:
                pod = api.deserialize(Raw({"metadata": {"name": "p", "labels": {"a": "b"}}}), "V1Pod")
            finally:
                await api.close()
            return {"type": type(pod).__name__, "name": pod.metadata.name, "labels": pod.metadata.labels}

        print(json.dumps(asyncio.run(main())))
        """
    )
    assert found == {"type": "V1Pod", "name": "p", "labels": {"a": "b"}}


def test_an_init_of_another_shape_is_imported_eagerly() -> None:
    generated = (
        'from __future__ import absolute_import\n__version__ = "1.0"\nfrom kubernetes_asyncio.client.x import X\n'
    )
    assert reexports(generated) == {"X": "kubernetes_asyncio.client.x"}
    assert reexports(generated + "import os\n") is None
    assert reexports(generated + "def helper():\n    pass\n") is None
    assert reexports(generated + "from kubernetes_asyncio.client.x import X, Y\n") is None
    assert reexports("") is None


def test_install_is_a_no_op_once_the_client_is_imported() -> None:
    found = run(
        """
        import json
        import kubernetes_asyncio
        from multinic_ctrl import lean_imports
        print(json.dumps({"installed": lean_imports.install()}))
        """
    )
    assert found == {"installed": False}
