"""A tiny scripted HTTP server for edge cases the simulator cannot produce.

aioresponses 0.7.9 (the latest release) cannot build responses with aiohttp 3.14 (`ClientResponse` gained
a required `stream_writer` argument), so these tests script a real loopback server instead, which also
exercises the real client stack.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    url: str = ""
    replies: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    seen: list[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=list)

    def add(self, method: str, path: str, *replies: Reply) -> None:
        self.replies.setdefault((method, path), []).extend(replies)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, tuple(request.query.items())))
        queue = self.replies.get((request.method, request.path))
        if not queue:
            return web.json_response({"message": "unscripted"}, status=599)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        return web.Response(status=reply.status, text=text, headers=reply.headers, content_type="application/json")


@contextlib.asynccontextmanager
async def scripted_server() -> AsyncIterator[Scripted]:
    script = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    script.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield script
    finally:
        await runner.cleanup()
