"""In-process CPU of one ``POST /predict`` request of ``serve_load.py``, part by part.

Runs the benchmark's request (one customer: 20 transactions, one ticket, attributes) through the model in
--work-dir (trained by ``serve_load.py``) and prints, for each part, the best of --repeats runs of --calls
calls, in CPU microseconds per call (``time.process_time_ns``):

- ``FastScorer.score`` and, within it, the features, the model step (TreeSHAP contributions and the
  probability) and the rest (model row, calibration, reason texts, action, result dict);
- the HTTP app layer: the ASGI app called in process (no sockets) for the whole request, with the scorer
  replaced by one returning the cached answer, so what is left is routing, body, validation and answer.

    python benchmarks/request_cpu.py [--work-dir /tmp/serve_compact] [--calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from serve_load import _customer

AS_OF = "2025-12-31"


def _best(fn, calls: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time_ns()
        for _ in range(calls):
            fn()
        times.append((time.process_time_ns() - start) / calls / 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serve_compact"))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from churnguard.serving.app import PredictRequest, create_app

    body = json.dumps({"as_of": AS_OF, "customers": [_customer()]}).encode()
    app = create_app(args.work_dir / "model.zip")
    results: dict[str, float] = {}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            scorer = app.state.scorer
            c = PredictRequest.model_validate_json(body).customers[0]
            # the scorer's inputs as the server hands them over (models' field dicts in earlier versions)
            tx = [t if isinstance(t, dict) else vars(t) for t in c.transactions]
            tk = [t if isinstance(t, dict) else vars(t) for t in c.tickets]
            day = PredictRequest.model_validate_json(body).as_of
            answer = scorer.score(c.customer_id, tx, tk, c.attributes, day)
            feats = scorer._features(tx, tk, c.attributes, day)
            row = scorer._row(feats)
            shap = getattr(scorer, "_shap", None)
            if shap is not None:
                def model_step():
                    return shap.probability(shap(row)[1])
            else:  # LightGBM's single-row calls
                def model_step():
                    return scorer._contrib(row), scorer._proba(row)
            results["FastScorer.score"] = _best(lambda: scorer.score(c.customer_id, tx, tk, c.attributes, day),
                                                args.calls, args.repeats)
            results["- features"] = _best(lambda: scorer._features(tx, tk, c.attributes, day), args.calls,
                                          args.repeats)
            results["- TreeSHAP contributions and probability"] = _best(model_step, args.calls, args.repeats)
            results["- the rest"] = (results["FastScorer.score"] - results["- features"]
                                     - results["- TreeSHAP contributions and probability"])

            class Cached:
                def score(self, *args):
                    return answer

            app.state.scorer = Cached()
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "path": "/predict", "raw_path": b"/predict", "root_path": "", "scheme": "http",
                     "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
                     "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                                 (b"content-length", str(len(body)).encode())]}

            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message):
                pass

            async def requests(n: int) -> None:
                for _ in range(n):
                    await app(dict(scope), receive, send)

            times = []
            for _ in range(args.repeats):
                start = time.process_time_ns()
                await requests(args.calls)
                times.append((time.process_time_ns() - start) / args.calls / 1000)
            results["HTTP app layer without scoring"] = min(times)
            app.state.scorer = scorer

    asyncio.run(run())
    for name, us in results.items():
        print(f"{name:<45} {us:7.1f} us")


if __name__ == "__main__":
    main()
