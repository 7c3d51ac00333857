"""Answers of ``POST /predict`` to a fixed set of generated requests, written to a file to compare checkouts
byte for byte.

Builds the app of ``churnguard.serving.app.create_app`` on the model in --work-dir (``serve_load.py``'s),
sends it, in process (ASGI, no sockets), 41 requests of 1 to 200 generated customers (seeded: transactions
with and without order ids, refunds, tickets, attributes, events for some; with and without ``as_of``) and
one invalid request, one at a time, then the first 30 together (so the batcher scores them in shared calls),
and writes each answer's status and body, one a line, to --out. Run it with ``PYTHONPATH=<checkout>/src`` for
each checkout and compare the files (``cmp``).

    python benchmarks/predict_answers.py --work-dir /tmp/serve_bench --out answers.txt
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
from pathlib import Path

from serve_load import predict_scope


def _customer(rng: random.Random, i: int) -> dict:
    n = rng.choice([0, 1, 2, 5, 20, 60])
    tx = []
    for _ in range(n):
        month, day, year = rng.randint(1, 12), rng.randint(1, 28), rng.choice([2024, 2025, 2025, 2025, 2026])
        t = {"timestamp": f"{year}-{month:02d}-{day:02d}T{rng.randint(0, 23):02d}:00:00",
             "amount": round(rng.choice([1, 1, 1, -1]) * rng.uniform(1, 400), 2)}
        if rng.random() < 0.7:
            t["order_id"] = f"o{rng.randint(0, n)}"
        if rng.random() < 0.3:
            t["quantity"] = rng.randint(1, 5)
        if rng.random() < 0.3:
            t["discount"] = round(rng.uniform(0, 20), 2)
        if rng.random() < 0.3:
            t["channel"] = rng.choice(["web", "store", "app"])
        if rng.random() < 0.3:
            t["category"] = rng.choice(["a", "b", "c"])
        tx.append(t)
    tickets = []
    for _ in range(rng.choice([0, 0, 1, 3])):
        t = {"opened_at": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 20):02d}T09:00:00"}
        if rng.random() < 0.7:
            t["first_response_at"] = t["opened_at"][:8] + "25T10:00:00"
        if rng.random() < 0.5:
            t["resolved_at"] = t["opened_at"][:8] + "27T10:00:00"
        if rng.random() < 0.6:
            t["csat"] = rng.randint(1, 5)
        tickets.append(t)
    attributes = {}
    if rng.random() < 0.7:
        attributes = {"loyalty_member": rng.choice([True, False, "yes", None]),
                      "nps": rng.choice([None, 0, 3, 6, 9, 10]),
                      "signup_date": rng.choice(["2023-01-05", "2024-05-01", "2025-11-30", "2026-06-01"])}
        if rng.random() < 0.5:
            attributes["loyalty_points"] = rng.randint(0, 5000)
    customer = {"customer_id": f"c{i}", "transactions": tx, "tickets": tickets, "attributes": attributes}
    if rng.random() < 0.3:
        customer["events"] = [{"timestamp": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00",
                               "event_type": rng.choice(["visit", "session", "email_open", "email_click"]),
                               "session_id": rng.choice([None, "s1", "s2"])} for _ in range(rng.randint(0, 8))]
    return customer


def _bodies() -> list[bytes]:
    rng = random.Random(13)
    bodies, first = [], 0
    for size in [1] * 30 + [2, 3, 5, 8, 8, 16, 16, 33, 64, 65, 200]:
        as_of = rng.choice([None, "2025-12-31", "2025-06-30"])
        body: dict = {"customers": [_customer(rng, first + j) for j in range(size)]}
        first += size
        if as_of:
            body["as_of"] = as_of
        bodies.append(json.dumps(body).encode())
    bad = {"as_of": "2025-12-31", "customers": [{"customer_id": "x", "transactions": [
        {"timestamp": "2025-01-01T00:00:00", "amount": "zz"}]}]}
    return [*bodies, json.dumps(bad).encode()]


async def _post(app, body: bytes) -> tuple[int, bytes]:
    scope = predict_scope(body)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _answers(model: Path) -> list[tuple[int, bytes]]:
    from churnguard.serving.app import create_app

    app = create_app(model)
    bodies = _bodies()
    async with app.router.lifespan_context(app):
        answers = [await _post(app, body) for body in bodies]
        answers += await asyncio.gather(*(_post(app, body) for body in bodies[:30]))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serve_bench"),
                        help="directory holding model.zip (written by serve_load.py --work-dir)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    answers = asyncio.run(_answers(args.work_dir / "model.zip"))
    args.out.write_bytes(b"".join(b"%d %s\n" % (status, body) for status, body in answers))
    print(f"{len(answers)} answers (statuses {sorted({s for s, _ in answers})}) written to {args.out}, "
          f"sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
