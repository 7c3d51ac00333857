"""The server's HTTP protocol: uvicorn's own (httptools when installed, else h11) with a deadline on the request
headers, which uvicorn does not have.

A connection whose request line and headers are not complete within ``header_timeout`` seconds, counted from
the moment it opens or, on a kept-alive connection, from the first byte of the next request, is closed; when
part of a request came, it is answered 408 first. So a client that sends its headers a byte at a time
(slowloris) holds a connection for ``header_timeout`` seconds at most. Idle kept-alive connections are closed
by uvicorn (``timeout_keep_alive``), and request bodies have the app's own deadline
(``churnguard.serving.app``: 408 after ``body_timeout``). A response's head and body, which uvicorn writes
separately, leave in one write (``_Coalescing``). With several workers, each counts its open connections on
the shared board of ``churnguard.serving.spread``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from churnguard.serving import spread

__all__ = ["HEADER_TIMEOUT", "HeaderDeadline", "HeaderTimeoutProtocol", "header_timeout_protocol"]

logger = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds


class HeaderDeadline:
    """The request-header deadline, over either of uvicorn's HTTP protocols (``HttpToolsProtocol``,
    ``H11Protocol``): see the module docstring. A request's headers are complete when the protocol starts a
    new request-response cycle (``self.cycle``), in both."""

    def __init__(self, *args: Any, header_timeout: float = HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_started = False  # a byte of the awaited request came

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalescing(transport, self.loop)
        self._arm()
        self._board = spread.current()  # this worker's connections, counted for spreading them
        if self._board is not None:
            self._board.opened()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        awaiting = before is None or before.response_complete  # these bytes start (or go on with) a request
        self._request_started = self._request_started or awaiting
        super().data_received(data)
        if self.cycle is not before:  # the headers are complete
            self._disarm()
        elif awaiting and self._header_timer is None:  # armed only when the headers are still to come
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if getattr(self, "_board", None) is not None:
            self._board.closed()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._request_started = False

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not (self.cycle is None or self.cycle.response_complete):
            return
        if self._request_started:
            self.transport.write(_late_response(self.header_timeout))
        logger.debug("%s: request headers not complete within %g s, connection closed", self.client,
                     self.header_timeout)
        self.transport.close()


class _Coalescing:
    """A transport whose writes within one round of the event loop go out as one: uvicorn writes a response's
    status line and headers, then its body, each with its own ``write`` (a system call and a TCP segment each);
    held until the end of the round, they leave in one. Everything else is the transport's own; closing sends
    what is held first; what is held when the connection is lost is dropped."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():  # the client went away meanwhile: nobody to send it to
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeaderTimeoutProtocol(HeaderDeadline, AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools when installed, else h11) with the request-header deadline."""


def _late_response(seconds: float) -> bytes:
    """The 408 answer, closing the connection, to a request whose headers came too slowly."""
    body = b'{"detail":"the request headers did not arrive within %g s"}' % seconds
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT) -> functools.partial:
    """The protocol for ``uvicorn.run(..., http=...)`` with request headers due within ``seconds`` (a partial
    of a module-level class, so it reaches the worker processes of ``workers > 1``)."""
    if not seconds > 0:
        raise ValueError(f"the header timeout must be a positive number of seconds, got {seconds}")
    return functools.partial(HeaderTimeoutProtocol, header_timeout=seconds)
