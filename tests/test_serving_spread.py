"""Keep-alive connections spread over the server's workers: the shared board of connection counts, the app
asking a client to reconnect when its worker is crowded, and a real two-worker server."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from churnguard.serving import create_app, spread
from churnguard.serving.spread import Board
from tests.live_server import serve
from tests.test_serving_guards import _call, _run


@pytest.fixture
def api(trained):
    return create_app(trained["result"].model_path)


@pytest.fixture
def board_path(tmp_path):
    with spread.board_file(2) as given:
        workers, _, path = given.partition(":")
        assert workers == "2"
        yield path


def test_a_worker_over_its_share_asks_one_client_at_a_time_to_reconnect(board_path):
    a, b = Board(board_path, 2), Board(board_path, 2)  # two workers (here one process: the slots differ)
    assert (a.slot, b.slot) == (0, 1)
    for _ in range(5):
        a.opened()
    b.opened()
    # 6 connections, a share of 3: a holds 5, so it asks one client, then another, and no more
    assert [a.crowded() for _ in range(3)] == [True, True, False]
    assert not b.crowded()
    a.closed()  # one of them leaves ...
    b.opened()  # ... and lands on b: 4 against 2
    assert not a.crowded()  # the other one asked is still on its way
    a.closed()
    b.opened()  # 3 against 3
    assert not a.crowded()
    assert not b.crowded()


def test_an_odd_total_leaves_one_worker_a_connection_more_and_a_lone_client_is_never_asked(board_path):
    a, b = Board(board_path, 2), Board(board_path, 2)
    a.opened()
    assert not a.crowded()  # one client: its share is 1
    a.opened()
    for _ in range(3):
        b.opened()
    assert not b.crowded()  # 2 against 3: the share of 5 is 3
    b.opened()
    assert b.crowded()  # 2 against 4


def test_a_worker_takes_over_the_slot_of_one_that_is_gone(board_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    first = Board(board_path, 2)
    first._counts[0], first._counts[1] = int(gone.stdout), 7  # as a worker that died holding 7 connections
    first._counts[2], first._counts[3] = 0, 0
    restarted = Board(board_path, 2)
    assert restarted.slot == 0
    assert restarted._counts[1] == 0
    third = Board(board_path, 2)  # a live process in each slot: no room
    assert third.slot == 1
    with pytest.raises(RuntimeError, match="slots"):
        Board(board_path, 2)


def test_the_app_asks_the_client_to_reconnect_when_its_worker_is_crowded(api, board_path):
    board, other = Board(board_path, 2), Board(board_path, 2)
    for _ in range(3):
        board.opened()
    other.opened()
    api.board = board

    async def scenario():
        return [await _call(api, "GET", "/health") for _ in range(3)]

    answers = _run(api, scenario)
    assert [status for status, _, _ in answers] == [200] * 3
    closing = [headers.get(b"connection") == b"close" for _, headers, _ in answers]
    assert closing == [True, False, False]  # 3 against 1: one asked, then none until it has gone


def test_two_workers_answer_and_leave_a_lone_keep_alive_client_where_it_is(trained, tmp_path):
    """With two workers a lone client is within its share: its connection is never closed (one in a hundred
    was, whatever the split); clients sharing the workers all get their answers."""
    with serve(["--model", str(trained["result"].model_path), "--workers", "2"], tmp_path) as (base, _):
        with httpx.Client() as client:
            lone = [client.get(f"{base}/health") for _ in range(300)]
        assert all(r.status_code == 200 for r in lone)
        assert not any(r.headers.get("connection") == "close" for r in lone)
        clients = [httpx.Client() for _ in range(4)]
        try:
            answers = [c.get(f"{base}/health") for _ in range(50) for c in clients]
        finally:
            for c in clients:
                c.close()
        assert all(r.status_code == 200 for r in answers)
