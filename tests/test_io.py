"""Atomic writes: a crash mid-write never leaves a half file or a temp file behind."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard._io import atomic_path, write_table


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
