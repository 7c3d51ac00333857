#!/bin/sh
# The end-of-day hold: DuckDB's queries, then `features` (Parquet, CSV) and `score` at 1M customers, then
# `features` with 136.4M events, each with this checkout's src and with BASE (a detached checkout of an earlier
# commit), two rounds alternating. Run from the repository root under the benchmark lock:
#   git worktree add --detach /tmp/wt-start COMMIT && flock /tmp/bench.lock sh benchmarks/targets_hold.sh /tmp/wt-start
BASE=${1:?a checkout of the commit to compare with}/src
PY=${PY:-.venv/bin/python} D=benchmarks/.cache/demo-1000000-seed0 M=benchmarks/.cache/models/train-100000-seed0.zip
A="features --transactions $D/transactions.parquet --tickets $D/tickets.parquet --customers $D/customers.parquet --as-of 2025-12-31"
C="features --transactions $D/csv/transactions.csv --tickets $D/csv/tickets.csv --customers $D/csv/customers.csv --as-of 2025-12-31"
S="score --model $M --transactions $D/transactions.parquet --tickets $D/tickets.parquet --customers $D/customers.parquet"
E=benchmarks/.cache/demo-events-1000000-seed0
B="--transactions $E/transactions.parquet --customers $E/customers.parquet --events $E/events.parquet --as-of 2025-12-31"
echo "== start $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
for r in 1 2; do
  echo "-- round $r"
  env PYTHONPATH=benchmarks $PY benchmarks/duckdb_rfm.py $D/transactions.parquet
  env PYTHONPATH=benchmarks $PY benchmarks/duckdb_rfm.py $D/csv/transactions.csv
  for src in "$PWD/src" "$BASE"; do
    echo "[$src]"
    $PY benchmarks/command_bench.py --src $src -- $A --out /dev/shm/fa.parquet
    $PY benchmarks/command_bench.py --src $src -- $C --out /dev/shm/fc.parquet
    $PY benchmarks/command_bench.py --src $src -- $S --out /dev/shm/s.parquet
  done
done
echo "== events $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
env PYTHONPATH=src:benchmarks $PY benchmarks/events_speed.py --customers 1000000 --measure duckdb
for r in 1 2; do
  for src in "$PWD/src" "$BASE"; do
    echo "[$src]"
    $PY benchmarks/command_bench.py --src $src -- features $B --out /dev/shm/e.parquet
  done
done
env PYTHONPATH=src:benchmarks $PY benchmarks/events_speed.py --customers 1000000 --measure duckdb
echo "== end $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
rm -f /dev/shm/fa.parquet /dev/shm/fc.parquet /dev/shm/s.parquet /dev/shm/s.* /dev/shm/e.parquet /dev/shm/*.drift.csv /dev/shm/*.rejects.csv
