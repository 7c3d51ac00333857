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


def test_playbook_rules_that_can_never_match_are_named(tmp_path, caplog):
    """A rule no customer can get was taken silently: the playbook worked, but not as its author meant."""
    from churnguard.config import load_playbook

    path = tmp_path / "actions.yaml"
    path.write_text("""actions:
  - {name: lost_and_high, when: {band: [high], stage: [lost]}, cost: 5, success_rate: 0.2}
  - {name: nobody, when: {band: []}, cost: 5, success_rate: 0.2}
  - {name: torn, when: {signals: [bad_support], not_signals: [bad_support]}, cost: 5, success_rate: 0.2}
  - {name: high_active, when: {band: [high], stage: [lost, active]}, cost: 5, success_rate: 0.2}
  - {name: lost_band, when: {band: [lost], stage: [lost]}, cost: 5, success_rate: 0.2}
  - {name: everyone, when: {}, cost: 1, success_rate: 0.1}
  - {name: after, when: {band: [high]}, cost: 5, success_rate: 0.2}
  - {name: no_action, when: {}, cost: 0, success_rate: 0}
""")
    with caplog.at_level("WARNING", logger="churnguard.config"):
        playbook = load_playbook(path)
    assert playbook.unreachable() == [
        ("playbook rule 'lost_and_high' can never match: no customer of the stage(s) lost has the band(s) high "
        "(high, medium and low are the bands of customers with a churn probability; the others' band is their "
        "stage)"),
        "playbook rule 'nobody' can never match: its band list is empty",
        "playbook rule 'torn' can never match: it both needs and refuses the signal bad_support",
        "playbook rule 'after' can never match: it comes after 'everyone', which matches every customer",
        "playbook rule 'no_action' can never match: it comes after 'everyone', which matches every customer",
    ]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: {why}" for why in playbook.unreachable()]
    caplog.clear()
    with caplog.at_level("WARNING", logger="churnguard.config"):
        assert load_playbook().unreachable() == []  # the built-in playbook: every rule can be reached
    assert caplog.records == []
