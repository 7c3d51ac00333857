"""In-process CPU of one ``POST /predict`` request of ``serve_load.py``, part by part.

Runs the benchmark's request (one customer: 20 transactions, one ticket, attributes) through the model in
--work-dir (trained by ``serve_load.py``) the way the server does, and prints, for each part, the best of
--repeats runs of --calls calls, in CPU microseconds per call (``time.process_time_ns``, the whole process):

- ``churnguard.scoring.score_records`` for the one customer (the server's scoring call, with the population
  precomputed as the server does at start-up) and, within it:
  - ``churnguard.features.records.records_features`` (the feature kernel on plain records);
  - ``churnguard.scoring.score_columns`` (probability, band, tier, reasons, action, expected value), and within
    that the model step ``model.explain`` on the one-row model matrix (LightGBM's ``pred_contrib`` and
    ``predict`` calls, one thread, and the calibration), each LightGBM call also alone;
  - the rest of ``score_records`` (the selection columns and the result dicts);
- the HTTP app layer: the ASGI app called in process (no sockets) for the whole request, with the batcher
  replaced by one returning the cached answer at once, so what is left is the body, validation, the records,
  the answer's JSON and the ASGI messages;
- the whole request in process through the real batcher (app layer + event-loop round trip + scoring);
- ``score_records`` for --batch customers in one call (distinct ids, the same history), per customer: what
  the server's batching of concurrent requests' customers costs per request.

With ``--profile``, ``score_records`` for the one customer, then for the first --batch size, is also run
--calls times under cProfile and the churnguard's and LightGBM's functions are listed by cumulative time,
then all functions by their own time (profiling overhead included).

    python benchmarks/request_cpu.py [--work-dir /tmp/serve_bench] [--calls 2000] [--repeats 5] [--batch 8,16]
        [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from serve_load import _customer, predict_scope

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
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serve_bench"),
                        help="directory holding model.zip (written by serve_load.py --work-dir)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", default="8,16",
                        help="comma-separated customers per score_records call for the per-customer figures")
    parser.add_argument("--profile", action="store_true",
                        help="also list score_records' costliest functions (cProfile, one customer)")
    args = parser.parse_args()
    from churnguard.features.kernel import categorical_levels
    from churnguard.features.records import CustomerRecords, records_features
    from churnguard.scoring import score_columns, score_records
    from churnguard.scoring.score import _matrix
    from churnguard.serving.app import PredictRequest, create_app

    body = json.dumps({"as_of": AS_OF, "customers": [_customer()]}).encode()
    app = create_app(args.work_dir / "model.zip")
    results: dict[str, float] = {}
    profile_text: list[str] = []
    calls, repeats = args.calls, args.repeats

    async def run() -> None:
        async with app.router.lifespan_context(app):
            state = app.state
            model, playbook, population = state.model, state.playbook, state.population
            req = PredictRequest.model_validate_json(body)
            as_of = req.as_of
            # the records as the server hands them over (validated dicts)
            customers = [CustomerRecords(c.customer_id, c.transactions, c.tickets, c.attributes)
                         for c in req.customers]
            cfg = model.require_info().config.features
            levels = categorical_levels(population.attributes or {})
            answer = score_records(model, customers, as_of, playbook, population)
            _, cols = records_features(customers, as_of, cfg, population)
            history = np.nan_to_num(np.asarray(cols["n_orders"], dtype="float64")) > 0
            matrix = _matrix(model.feature_names_, model.categories_, cols, levels, history)
            assert matrix.shape == (1, len(model.feature_names_))
            booster, best = model.booster_, model.best_iteration_
            gc.collect()
            gc.freeze()  # as the server does after loading

            results["score_records (1 customer)"] = _best(
                lambda: score_records(model, customers, as_of, playbook, population), calls, repeats)
            results["- records_features"] = _best(
                lambda: records_features(customers, as_of, cfg, population), calls, repeats)
            results["- score_columns"] = _best(
                lambda: score_columns(model, cols, levels, playbook, as_of=as_of), calls, repeats)
            results["  - model.explain (contributions + probability)"] = _best(
                lambda: model.explain(matrix), calls, repeats)
            results["    - Booster.predict(pred_contrib=True)"] = _best(
                lambda: booster.predict(matrix, num_iteration=best, pred_contrib=True, num_threads=1),
                calls, repeats)
            results["    - Booster.predict (probability)"] = _best(
                lambda: booster.predict(matrix, num_iteration=best, num_threads=1), calls, repeats)
            results["  - model matrix (_matrix + column_matrix)"] = _best(
                lambda: _matrix(model.feature_names_, model.categories_, cols, levels, history), calls, repeats)
            results["  - rest of score_columns (bands, signals, actions, reason texts)"] = (
                results["- score_columns"] - results["  - model.explain (contributions + probability)"]
                - results["  - model matrix (_matrix + column_matrix)"])
            results["- rest of score_records (selection, result dicts)"] = (
                results["score_records (1 customer)"] - results["- records_features"] - results["- score_columns"])

            scope = predict_scope(body)
            sent: list[dict] = []

            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message):
                if message["type"] == "http.response.start":
                    sent.append(message)

            async def requests(n: int) -> float:
                start = time.process_time_ns()
                for _ in range(n):
                    await app(dict(scope), receive, send)
                return (time.process_time_ns() - start) / n / 1000

            class Cached:
                async def score(self, customers, as_of, receive=None):
                    return answer

            batcher = state.batcher
            state.batcher = Cached()
            results["HTTP app layer without scoring (cached answer)"] = min(
                [await requests(calls) for _ in range(repeats)])
            state.batcher = batcher
            results["whole request in process (app + batcher + scoring)"] = min(
                [await requests(calls) for _ in range(repeats)])
            assert all(m["status"] == 200 for m in sent), {m["status"] for m in sent}

            for size in [int(v) for v in args.batch.split(",") if v.strip()]:
                many = [replace(customers[0], customer_id=f"bench-{i}") for i in range(size)]
                per_call = _best(lambda many=many: score_records(model, many, as_of, playbook, population),
                                 max(calls // size, 20), repeats)
                results[f"score_records, {size} customers in one call, per customer"] = per_call / size

            if args.profile:
                import cProfile
                import io
                import pstats

                sizes = [1] + [int(v) for v in args.batch.split(",") if v.strip()][:1]
                for size in sizes:  # one customer, and the first --batch size
                    many = customers if size == 1 else [replace(customers[0], customer_id=f"bench-{i}")
                                                        for i in range(size)]
                    profiler = cProfile.Profile()
                    profiler.enable()
                    for _ in range(calls):
                        score_records(model, many, as_of, playbook, population)
                    profiler.disable()
                    buf = io.StringIO()
                    stats = pstats.Stats(profiler, stream=buf)
                    stats.sort_stats("cumulative").print_stats(r"churnguard/|lightgbm/basic", 30)
                    stats.sort_stats("tottime").print_stats(15)
                    profile_text.append(f"{size} customer(s) per call:\n{buf.getvalue()}")

    asyncio.run(run())
    for name, us in results.items():
        print(f"{name:<70} {us:8.1f} us")
    for text in profile_text:
        print(f"\ncProfile of {calls} score_records calls, {text}")


if __name__ == "__main__":
    main()
