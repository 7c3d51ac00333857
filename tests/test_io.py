"""Atomic writes: a crash mid-write never leaves a half file or a temp file behind; work directories of
ended processes are removed; outputs of one run are replaced together."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from churnguard._io import WORK_PREFIX, atomic_path, replaced_together, work_dir, write_table


def _crash_while_writing(target, text):
    with atomic_path(target) as tmp:
        tmp.write_text(text)  # part of the output...
        raise RuntimeError("disk full")  # ...then the crash


def test_failure_mid_write_leaves_nothing(tmp_path):
    target = tmp_path / "scores.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        _crash_while_writing(target, "customer_id,churn_probability\nc1,0.3\n")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_version(tmp_path):
    target = tmp_path / "scores.csv"
    write_table(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError, match="disk full"):
        _crash_while_writing(target, "a\n2\n")
    assert pd.read_csv(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_written_files_get_normal_permissions(tmp_path):
    path = write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    assert path.stat().st_mode & 0o044  # readable by group/others as open() would make it under umask 022


def test_unsupported_extension(tmp_path):
    with pytest.raises(ValueError, match="use .csv or .parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx")


def test_work_dirs_of_ended_processes_are_removed_by_the_next_run(tmp_path):
    host = socket.gethostname()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True).stdout.strip()
    left = tmp_path / f"{WORK_PREFIX}{host}-{ended}-abc"  # a process killed with SIGKILL leaves this behind
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "transactions-0-0.arrow").write_bytes(b"customer data")
    running = tmp_path / f"{WORK_PREFIX}{host}-{os.getpid()}-def"  # a run still going (this one)
    elsewhere = tmp_path / f"{WORK_PREFIX}other-host-{ended}-ghi"  # its pid means nothing here
    running.mkdir()
    elsewhere.mkdir()
    with work_dir(tmp_path) as work:
        assert work.name.startswith(f"{WORK_PREFIX}{host}-{os.getpid()}-")
        (work / "piece.arrow").write_bytes(b"x")
        assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, elsewhere.name])


def test_outputs_are_replaced_together_and_a_stale_one_removed(tmp_path):
    scores, rejects = tmp_path / "scores.csv", tmp_path / "scores.rejects.csv"
    scores.write_text("old scores\n")
    rejects.write_text("old rejects\n")
    def crash() -> None:
        with replaced_together(scores, rejects) as (s, r):
            write_table(pd.DataFrame({"a": [1]}), s)
            write_table(pd.DataFrame({"b": [1]}), r)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        crash()
    assert (scores.read_text(), rejects.read_text()) == ("old scores\n", "old rejects\n")  # nothing changed
    with replaced_together(scores, rejects) as (s, _r):  # a run without rejects
        write_table(pd.DataFrame({"a": [2]}), s)
        assert scores.read_text() == "old scores\n"  # not before the block ends
    assert pd.read_csv(scores)["a"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_an_output_elsewhere_is_replaced_with_the_others(tmp_path):
    scores, rejects = tmp_path / "scores.csv", tmp_path / "elsewhere" / "rejects.csv"
    with replaced_together(scores, rejects) as (s, r):
        write_table(pd.DataFrame({"a": [1]}), s)
        write_table(pd.DataFrame({"b": [2]}), r)
    assert pd.read_csv(rejects)["b"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "scores.csv"]
