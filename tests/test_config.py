"""Config: defaults, the shipped YAML, and clear errors for typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_spells_out_the_defaults():
    assert load_config(ROOT / "configs" / "train.yaml") == load_config()


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("labels:\n  horizon: 30\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid configuration: labels\.horizon: Extra inputs"):
        load_config(p)


def test_bad_value_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("labels:\n  horizon_days: -3\n")
    with pytest.raises(ConfigError, match=r"labels\.horizon_days"):
        load_config(p)


def test_missing_and_malformed(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "none.yaml")
    p = tmp_path / "c.yaml"
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p)


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(ValueError, match="frozen"):
        cfg.labels.horizon_days = 5


def test_overrides_are_validated():
    cfg = load_config().with_overrides(labels={"horizon_days": 30, "lookback_days": None})
    assert cfg.labels.horizon_days == 30
    assert cfg.labels.lookback_days == 365
    with pytest.raises(ConfigError, match="command-line options"):
        load_config().with_overrides(labels={"horizon_days": 0})


def test_public_api_resolves():
    import churnguard

    assert set(churnguard.__all__) - {"__version__"} == set(churnguard._EXPORTS)
    for name in churnguard._EXPORTS:
        assert getattr(churnguard, name) is not None
