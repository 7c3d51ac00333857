"""The request-header deadline of ``churnguard serve`` (``churnguard.serving.protocol``), against the real server
on 127.0.0.1 started with ``--header-timeout 1``: a client that stalls or trickles its headers is cut off after
about a second, while normal requests, kept-alive connections and slow bodies are served. The deadline over
both of uvicorn's HTTP parsers (httptools, h11) is checked on a plain ASGI app served in this process."""

from __future__ import annotations

import functools
import http.client
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from churnguard.serving.protocol import HeaderDeadline
from tests.live_server import free_port, serve

TIMEOUT = 1.0  # --header-timeout of the server under test, in seconds


@pytest.fixture(scope="module")
def address(trained, tmp_path_factory):
    args = ["--model", str(trained["result"].model_path), "--header-timeout", str(TIMEOUT)]
    with serve(args, tmp_path_factory.mktemp("header-timeout")) as (base, _):
        url = urlsplit(base)
        yield url.hostname, url.port


def _until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took."""
    start, got = time.monotonic(), b""
    while chunk := sock.recv(65536):
        got += chunk
    return got, time.monotonic() - start


def test_a_client_stalling_in_its_request_line_gets_408_and_is_disconnected(address):
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /hea")
        answer, waited = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"connection: close" in answer
    assert answer.endswith(b'{"detail":"the request headers did not arrive within 1 s"}')
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 2


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(address):
    """Every byte comes within the deadline, the whole headers do not: the deadline counts from the start."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n"
    with socket.create_connection(address, timeout=10) as sock:
        start = time.monotonic()
        for i in range(len(request)):
            try:
                sock.sendall(request[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.monotonic() - start > TIMEOUT + 2:
                break
        answer, _ = _until_closed(sock)
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed < TIMEOUT + 2.5  # the request takes 5 s to send at this pace


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(address):
    with socket.create_connection(address, timeout=10) as sock:
        answer, waited = _until_closed(sock)
    assert answer == b""
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 2


def test_kept_alive_connections_and_slow_bodies_are_served(address):
    """Three requests on one connection spread over longer than the deadline (each one's headers arrive at
    once), then a body sent in three parts over 1.5 s: its headers were complete, so it is answered."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        socks = []
        for _ in range(3):
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok"}
            socks.append(conn.sock)
            time.sleep(TIMEOUT * 0.6)
        assert socks[0] is socks[1] is socks[2]  # one connection, kept alive
    finally:
        conn.close()
    body = json.dumps({"as_of": "2025-06-30", "customers": [
        {"customer_id": "x1", "transactions": [{"timestamp": "2025-06-01T10:00:00", "amount": 20.0}]}]}).encode()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        third = len(body) // 3
        for part in (body[:third], body[third : 2 * third], body[2 * third :]):
            time.sleep(TIMEOUT * 0.5)
            sock.sendall(part)
        answer, _ = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"customer_id":"x1"' in answer


async def _hello(scope, receive, send):
    """A plain ASGI app: reads the body, answers 200 'hello'."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(params=["httptools", "h11"])
def plain_address(request):
    """``_hello`` served in this process on 127.0.0.1 by uvicorn's ``request.param`` parser with the header
    deadline (0.5 s)."""
    import uvicorn

    if request.param == "httptools":
        pytest.importorskip("httptools")
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    protocol = type(f"Deadline{base.__name__}", (HeaderDeadline, base), {})
    port = free_port()
    # ws="none": uvicorn 0.29 (the floor) would import websockets' deprecated legacy module in the server thread
    server = uvicorn.Server(uvicorn.Config(_hello, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                                           ws="none", http=functools.partial(protocol, header_timeout=0.5)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(10)


def test_the_deadline_holds_with_either_parser(plain_address):
    with socket.create_connection(plain_address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: the headers never end
        answer, waited = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.4 <= waited < 2.5
    conn = http.client.HTTPConnection(*plain_address, timeout=10)
    try:
        for _ in range(3):  # 0.9 s on one connection, past the deadline, each request's headers at once
            conn.request("POST", "/", body=b"x" * 10)
            assert conn.getresponse().read() == b"hello"
            time.sleep(0.3)
        sock = conn.sock
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"hello"
        assert conn.sock is sock
    finally:
        conn.close()


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_serve_refuses_a_header_timeout_that_is_not_positive(seconds):
    from typer.testing import CliRunner

    from churnguard.cli import app

    res = CliRunner().invoke(app, ["serve", "--model", "m.zip", "--header-timeout", seconds])
    assert res.exit_code == 2
    assert f"--header-timeout must be more than 0 seconds, got {seconds}" in res.output


def test_the_protocol_reaches_worker_processes():
    """``serve --workers N`` hands uvicorn's config to spawned processes by pickling: the protocol survives."""
    import pickle

    from churnguard.serving.protocol import HeaderTimeoutProtocol, header_timeout_protocol

    protocol = pickle.loads(pickle.dumps(header_timeout_protocol(3.0)))
    assert protocol.func is HeaderTimeoutProtocol
    assert protocol.keywords == {"header_timeout": 3.0}


def test_writes_of_one_loop_round_go_out_as_one_and_closing_sends_them_first():
    """uvicorn writes a response's head and body separately; the protocol's transport sends them in one write
    at the end of the loop round, in order, sends what it holds before closing, and drops it when the client
    has gone."""
    import asyncio

    from churnguard.serving.protocol import _Coalescing

    class Recording:
        def __init__(self) -> None:
            self.calls: list[tuple[str, bytes]] = []
            self.closing = False

        def write(self, data: bytes) -> None:
            self.calls.append(("write", data))

        def close(self) -> None:
            self.calls.append(("close", b""))

        def is_closing(self) -> bool:
            return self.closing

    async def scenario() -> tuple[list, list, list]:
        raw = Recording()
        transport = _Coalescing(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"hello")
        held = list(raw.calls)
        await asyncio.sleep(0)  # the end of the round
        sent = list(raw.calls)
        transport.write(b"bye")
        transport.close()
        assert transport.is_closing() is False  # the rest is the transport's own
        closing = raw.calls[len(sent):]
        transport.write(b"lost")
        raw.closing = True  # the client went away before the end of the round
        await asyncio.sleep(0)
        return held, sent, closing, raw.calls[len(sent) + len(closing):]

    held, sent, closing, lost = asyncio.run(scenario())
    assert held == []
    assert sent == [("write", b"HTTP/1.1 200 OK\r\n\r\nhello")]
    assert closing == [("write", b"bye"), ("close", b"")]
    assert lost == []


def test_a_request_that_arrives_whole_sets_no_header_timer():
    """The deadline's timer runs while a request's headers are awaited: from the connection's opening, and from
    the first bytes of a request whose headers those bytes leave incomplete; bytes holding a whole request's
    headers set none (a timer set and cancelled per request costs more than the check)."""
    import asyncio

    class Cycle:  # uvicorn's request-response cycle, as far as the deadline reads it
        response_complete = False

    class Parser:  # stands in for uvicorn's protocol: a cycle starts once a request's headers are complete
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop, self.cycle, self.pending = loop, None, b""

        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.pending += data
            if b"\r\n\r\n" in self.pending:
                self.cycle, self.pending = Cycle(), b""

        def connection_lost(self, exc) -> None:
            pass

    class Counted(HeaderDeadline, Parser):
        armed = 0

        def _arm(self) -> None:
            self.armed += 1
            super()._arm()

    loop = asyncio.new_event_loop()
    try:
        protocol = Counted(loop, header_timeout=5.0)
        protocol.connection_made(object())
        assert protocol.armed == 1  # nothing sent yet
        assert protocol._header_timer is not None
        for _ in range(3):  # whole requests on a kept-alive connection
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert protocol._header_timer is None
            protocol.cycle.response_complete = True
        assert protocol.armed == 1
        protocol.data_received(b"GET / HTTP/1.1\r\nHo")  # a request's first bytes, its headers incomplete
        assert protocol.armed == 2
        assert protocol._header_timer is not None
        protocol.data_received(b"st: x\r\n\r\n")
        assert protocol.armed == 2
        assert protocol._header_timer is None
        protocol.connection_lost(None)
    finally:
        loop.close()
