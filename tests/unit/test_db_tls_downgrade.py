"""Asking for TLS to MariaDB must mean TLS, even when someone between us and the server strips it.

The scripted server below answers like MariaDB would without TLS support (no `CLIENT_SSL` in its greeting),
then, if a login arrives, asks for `mysql_clear_password` - what a man in the middle would do to read the
password. Stock aiomysql gives it the password although it was handed an SSL context; our connections must
send nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomysql
import pytest
from pymysql.constants import CLIENT

from multinic_ctrl.db import Database, DatabaseUnavailable
from multinic_ctrl.db.pool import connect_raw
from multinic_ctrl.settings import DatabaseSettings

PASSWORD = "s3cret-db-password"
_CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.LONG_FLAG
    | CLIENT.CONNECT_WITH_DB
    | CLIENT.PROTOCOL_41
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
)  # everything a login needs, and no CLIENT.SSL


def _packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def _greeting() -> bytes:
    return (
        b"\x0a5.5.5-10.11.19-MariaDB\x00"
        + struct.pack("<I", 7)
        + b"abcdefgh\x00"
        + struct.pack("<HBHH", _CAPABILITIES & 0xFFFF, 45, 0x0002, _CAPABILITIES >> 16)
        + bytes([21])
        + b"\x00" * 10
        + b"ijklmnopqrst\x00"
        + b"mysql_native_password\x00"
    )


@dataclass
class StrippingServer:
    received: bytearray = field(default_factory=bytearray)
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_packet(0, _greeting()))
        await writer.drain()
        try:
            header = await reader.readexactly(4)  # the client's login packet, if it sends one
            self.received += header + await reader.readexactly(int.from_bytes(header[:3], "little"))
            writer.write(_packet(header[3] + 1, b"\xfemysql_clear_password\x00"))
            await writer.drain()
            header = await reader.readexactly(4)
            self.received += header + await reader.readexactly(int.from_bytes(header[:3], "little"))
            writer.write(_packet(header[3] + 1, b"\x00\x00\x00\x02\x00\x00\x00"))  # OK, autocommit on
            await writer.drain()
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def settings(self, mode: str) -> DatabaseSettings:
        return DatabaseSettings(
            host="127.0.0.1", port=self.port, user="multinic", password=PASSWORD, ssl_mode=mode, connect_timeout=2.0
        )


@pytest.fixture
async def server() -> AsyncIterator[StrippingServer]:
    fake = StrippingServer()
    listener = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
    fake.port = listener.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        listener.close()
        await listener.wait_closed()


async def test_stock_aiomysql_hands_the_password_to_a_stripping_server(server: StrippingServer) -> None:
    """The attack is real: this is why connections are not opened with plain `aiomysql.connect(ssl=...)`."""
    context = ssl.create_default_context()
    conn = await aiomysql.connect(
        host="127.0.0.1", port=server.port, user="multinic", password=PASSWORD, ssl=context, autocommit=True
    )
    with contextlib.closing(conn):
        assert PASSWORD.encode() in server.received


@pytest.mark.parametrize("mode", ["required", "verify-ca", "verify-identity"])
async def test_tls_modes_send_nothing_to_a_server_without_tls(server: StrippingServer, mode: str) -> None:
    settings = server.settings(mode)
    with pytest.raises(DatabaseUnavailable, match=r"TLS is required .* but the server does not offer it"):
        await connect_raw(settings)
    database = Database(settings)
    try:
        with pytest.raises(DatabaseUnavailable, match="does not offer it"):
            await database.ping()
    finally:
        await database.close()
    assert server.received == b""
