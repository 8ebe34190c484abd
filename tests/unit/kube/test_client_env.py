"""The apiserver client reads the proxy environment once, not on every request (kube/client.py,
`without_per_request_env_lookups`): the proxy still applies exactly as the environment says, NO_PROXY and a
kubeconfig `proxy-url` included, and requests no longer hand off to a thread for netrc and proxy lookups."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from multinic_ctrl.kube import KubeClient
from multinic_ctrl.kube.client import without_per_request_env_lookups

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def _api_client(host: str, proxy: str | None = None) -> k8s_client.ApiClient:
    configuration = k8s_client.Configuration(host=host)
    configuration.proxy = proxy
    return k8s_client.ApiClient(configuration=configuration)


async def test_the_environment_proxy_is_resolved_once_with_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:s3cret@proxy.example:3128")
    api = without_per_request_env_lookups(_api_client("https://10.0.0.1:6443"))
    try:
        rest = api.rest_client
        assert rest.proxy == "http://proxy.example:3128"
        assert rest.proxy_headers["Proxy-Authorization"].startswith("Basic ")
        assert rest.pool_manager.trust_env is False
    finally:
        await api.close()


async def test_no_proxy_still_bypasses_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.1")
    api = without_per_request_env_lookups(_api_client("https://10.0.0.1:6443"))
    try:
        assert api.rest_client.proxy is None
        assert api.rest_client.pool_manager.trust_env is False
    finally:
        await api.close()


async def test_a_kubeconfig_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.example:3128")
    api = without_per_request_env_lookups(_api_client("https://10.0.0.1:6443", proxy="http://kubeconfig-proxy:8080"))
    try:
        assert api.rest_client.proxy == "http://kubeconfig-proxy:8080"
    finally:
        await api.close()


async def test_requests_make_no_thread_hand_offs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Before: every request ran netrc and proxy lookups in the default executor (two hand-offs per call)."""
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password never-sent\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    seen_auth: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen_auth.append(request.headers.get("Authorization"))
        return web.json_response({"kind": "Namespace", "metadata": {"name": "default"}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    hand_offs: list[object] = []
    original = loop.run_in_executor

    def counting(executor: object, func: object, *args: object) -> asyncio.Future[object]:
        hand_offs.append(func)
        return original(executor, func, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "run_in_executor", counting)
    api = without_per_request_env_lookups(_api_client(f"http://127.0.0.1:{port}"))
    kube = KubeClient(api, owns_api_client=True)
    try:
        from multinic_ctrl.kube import Resource

        namespaces = Resource("", "v1", "namespaces", False, "Namespace")
        for _ in range(3):
            assert (await kube.get(namespaces, "default"))["metadata"]["name"] == "default"
    finally:
        await kube.close()
        await runner.cleanup()
    assert hand_offs == []
    assert seen_auth == [None, None, None]  # netrc credentials are not a Kubernetes authentication method
