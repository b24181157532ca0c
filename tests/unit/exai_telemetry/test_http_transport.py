"""The aiohttp-backed transport keeps httpx's contract: pooled connections, slots freed
by closing a response, failures as httpx's exceptions. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from exai_telemetry.http_transport import AiohttpTransport, environment_proxy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP/1.1 server; yields its URL and a list with its connection count."""
    connections = [0]

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def keep_alive_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


def client(transport: AiohttpTransport, url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=transport, trust_env=False)


async def test_sequential_requests_reuse_one_connection() -> None:
    async with serving(keep_alive_ok) as (url, connections):
        async with client(AiohttpTransport(4), url) as http:
            for _ in range(5):
                response = await http.get("/")
                assert (response.status_code, response.text) == (200, "ok")
    assert connections[0] == 1


async def test_a_closed_stream_frees_its_slot_and_a_full_pool_is_a_pool_timeout() -> None:
    async with serving(keep_alive_ok) as (url, _):
        async with client(AiohttpTransport(1), url) as http:
            # Many more streamed requests than slots, each closed: none waits.
            for _ in range(5):
                async with http.stream("GET", "/") as response:
                    assert await response.aread() == b"ok"
            held = await http.send(http.build_request("GET", "/"), stream=True)
            try:
                with pytest.raises(httpx.PoolTimeout):
                    await http.get("/", timeout=httpx.Timeout(5.0, pool=0.2))
            finally:
                await held.aclose()
            assert (await http.get("/", timeout=httpx.Timeout(5.0, pool=0.2))).text == "ok"


async def test_a_body_cut_short_is_a_remote_protocol_error() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async with serving(short) as (url, _):
        async with client(AiohttpTransport(2), url) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get("/")


async def test_silence_past_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(5)

    async with serving(silent) as (url, _):
        async with client(AiohttpTransport(2), url) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/", timeout=httpx.Timeout(5.0, read=0.2))


async def test_a_refused_connection_is_a_connect_error() -> None:
    server = await asyncio.start_server(keep_alive_ok, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with client(AiohttpTransport(2), f"http://127.0.0.1:{port}") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


def test_the_egress_proxy_comes_from_the_environment_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    proxy = environment_proxy("https://api.moonshot.ai/v1")
    assert proxy is not None and proxy.url == "http://egress.example:3128"
    assert environment_proxy("https://internal.example/v1") is None
    assert environment_proxy("http://api.moonshot.ai/v1") is None  # no HTTP_PROXY set


async def test_a_body_over_a_mebibyte_arrives_whole() -> None:
    async def echo_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await read_head(reader)).decode("latin-1").lower()
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        body = await reader.readexactly(length)
        answer = str(len(body)).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()

    body = b"x" * (3 * 1024 * 1024)
    async with serving(echo_length) as (url, _):
        async with client(AiohttpTransport(2), url) as http:
            response = await http.post("/", content=body)
    assert response.text == str(len(body))
