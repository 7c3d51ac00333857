"""CPU of the server's scoring call for a few customers, this checkout against another one, in one process.

Loads ``churnguard`` from --base (another checkout's ``src``, e.g. a detached worktree of ``main``) and from
this checkout's ``src`` side by side (each with its own modules, swapped in before each of its calls), starts
both apps' lifespans on the model of ``serve_load.py --work-dir`` and times
``churnguard.scoring.score_records`` as the server calls it (the population precomputed, ``serve_load.py``'s
customer under distinct ids) for each --sizes number of customers: --rounds rounds of --calls calls, the two
checkouts alternating (which goes first alternates too), best round per checkout, in CPU microseconds per
call (``time.process_time_ns``). Both must give the same answers. Then, per checkout, cProfile's count of
function calls per scoring call (numpy's built-ins included) for each size. With ``--loop base|this``, only
that checkout's call for the first size, --calls times, nothing printed: a process for a sampling profiler
(``py-spy record -r 1000 -f raw -o FILE -- python benchmarks/score_calls.py ... --loop this``).

``--shares FILE`` prints, from such a file, the share of ``score_records``' samples in each of its parts.

    python benchmarks/score_calls.py --base /tmp/main-src/src [--work-dir /tmp/serve_bench] [--sizes 1,6,16]
        [--calls 60] [--rounds 30] [--loop base|this]
    python benchmarks/score_calls.py --shares FILE
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import sys
import time
from dataclasses import replace
from pathlib import Path

from serve_load import _customer

AS_OF = "2025-12-31"


def _ours(name: str) -> bool:
    return name == "churnguard" or name.startswith("churnguard.")


class _Checkout:
    """One checkout's churnguard, loaded once; :meth:`activate` puts its modules in ``sys.modules`` (functions
    importing inside their bodies find their own checkout's modules)."""

    def __init__(self, src: Path) -> None:
        self.src, self.modules = src, {}

    def activate(self) -> None:
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules.update(self.modules)

    async def start(self, model: Path, sizes: list[int]) -> dict[int, object]:
        self.activate()
        sys.path.insert(0, str(self.src))
        try:
            from churnguard.features.records import CustomerRecords
            from churnguard.scoring import score_records
            from churnguard.serving.app import PredictRequest, create_app

            app = create_app(model)
            self.lifespan = app.router.lifespan_context(app)
            await self.lifespan.__aenter__()
            state = app.state
            body = json.dumps({"as_of": AS_OF, "customers": [_customer()]}).encode()
            req = PredictRequest.model_validate_json(body)
            one = CustomerRecords(req.customers[0].customer_id, req.customers[0].transactions,
                                  req.customers[0].tickets, req.customers[0].attributes)
            calls = {}
            for size in sizes:
                many = [replace(one, customer_id=f"bench-{i}") for i in range(size)]
                calls[size] = (lambda many=many: score_records(state.model, many, req.as_of, state.playbook,
                                                               state.population))
                calls[size]()  # imports done inside functions happen now, from this checkout
            self.modules = {n: m for n, m in sys.modules.items() if _ours(n)}
            assert sys.modules["churnguard"].__file__.startswith(str(self.src)), sys.modules["churnguard"].__file__
            return calls
        finally:
            sys.path.remove(str(self.src))


# parts of score_records (py-spy's function names), inclusive of what they call
_PARTS = ("records_features", "purchase_features", "_support", "_attributes", "combine", "score_columns",
          "TreeShap.__call__", "_reasons", "assign_actions", "_matrix")


def _shares(path: Path) -> None:
    """Each part's share of the samples of ``score_records`` in a py-spy ``raw`` file."""
    total, parts = 0, dict.fromkeys(_PARTS, 0)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        names = {frame.split(" (")[0] for frame in stack.split(";")}
        if "score_records" in names:
            total += int(count)
            for part in parts:
                parts[part] += int(count) * (part in names)
    print(f"score_records: {total} samples")
    for part, n in parts.items():
        print(f"{part:<20} {100 * n / total:5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=Path, help="a py-spy raw file: print score_records' parts and stop")
    parser.add_argument("--base", type=Path, help="the other checkout's src directory")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serve_bench"),
                        help="directory holding model.zip (written by serve_load.py --work-dir)")
    parser.add_argument("--sizes", default="1,6,16")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--loop", choices=("base", "this"), help="only this checkout's call, --calls times")
    args = parser.parse_args()
    if args.shares is not None:
        return _shares(args.shares)
    if args.base is None:
        parser.error("--base is required")
    sizes = [int(v) for v in args.sizes.split(",")]
    here = Path(__file__).resolve().parents[1] / "src"
    checkouts = {"base": _Checkout(args.base.resolve()), "this": _Checkout(here)}

    async def run() -> None:
        calls = {name: await c.start(args.work_dir / "model.zip", sizes) for name, c in checkouts.items()}
        if args.loop is not None:
            checkouts[args.loop].activate()
            for _ in range(args.calls):
                calls[args.loop][sizes[0]]()
            return
        for size in sizes:
            answers = []
            for name, c in checkouts.items():
                c.activate()
                answers.append(json.dumps(calls[name][size](), default=str, sort_keys=True))
            assert answers[0] == answers[1], f"the checkouts answer differently for {size} customers"
        gc.collect()
        gc.freeze()  # as the server does after loading
        best = {(name, size): float("inf") for name in checkouts for size in sizes}
        for r in range(args.rounds):
            for size in sizes:
                for name in (("base", "this") if r % 2 == 0 else ("this", "base")):
                    checkouts[name].activate()
                    fn = calls[name][size]
                    start = time.process_time_ns()
                    for _ in range(args.calls):
                        fn()
                    best[name, size] = min(best[name, size], (time.process_time_ns() - start) / args.calls / 1000)
        counts = {}
        for name, c in checkouts.items():
            c.activate()
            for size in sizes:
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(20):
                    calls[name][size]()
                profiler.disable()
                counts[name, size] = pstats.Stats(profiler).total_calls / 20
        print(f"{'customers per call':>18}  {'base us/call':>12}  {'this us/call':>12}  {'change':>7}  "
              f"{'base us/customer':>16}  {'this us/customer':>16}  {'function calls per call (base -> this)'}")
        for size in sizes:
            b, t = best["base", size], best["this", size]
            print(f"{size:>18}  {b:>12.1f}  {t:>12.1f}  {100 * (t / b - 1):>+6.1f}%  {b / size:>16.1f}  "
                  f"{t / size:>16.1f}  {counts['base', size]:,.0f} -> {counts['this', size]:,.0f}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
