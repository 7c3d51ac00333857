"""Typed configuration, parsed once at the edge.

YAML files in ``configs/`` are loaded into frozen pydantic models, so a typo fails at load time with the
key's name, and each pipeline stage receives only the part it needs. The built-in defaults live in
``churnguard/defaults/train.yaml``; the repository's ``configs/train.yaml`` spells out the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = ["ColumnsConfig", "Config", "ConfigError", "DataConfig", "ExcludeConfig", "FeatureConfig", "LabelConfig", "ModelConfig",
           "Playbook", "SnapshotConfig", "TrackingConfig", "load_config", "load_playbook"]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration file is missing, malformed or holds an unknown key or bad value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnsConfig(_Frozen):
    """Column mapping per table: contract name -> the user's column name. Unmapped columns keep their name."""

    transactions: dict[str, str] = Field(default_factory=dict)
    tickets: dict[str, str] = Field(default_factory=dict)
    customers: dict[str, str] = Field(default_factory=dict)
    events: dict[str, str] = Field(default_factory=dict)
    campaigns: dict[str, str] = Field(default_factory=dict)

    def file_name(self, table: str, name: str) -> str:
        """The user's name of ``table``'s contract column ``name`` (its own name when unmapped)."""
        return getattr(self, table).get(name, name)


class ExcludeConfig(_Frozen):
    """Rows that are no part of the data, per table: a column of the file (its own name) -> the values whose
    rows are left out, e.g. postage lines ``{StockCode: [POST, M]}``; ``""`` stands for an empty cell."""

    transactions: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    tickets: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    customers: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    events: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    campaigns: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("transactions", "tickets", "customers", "events", "campaigns", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:
        """Values as text: YAML reads an unquoted code such as 85123 as a number."""
        if not isinstance(v, dict):
            return v
        return {k: [("" if x is None else str(x)) for x in (vals if isinstance(vals, list | tuple) else [vals])]
                for k, vals in v.items()}


class DataConfig(_Frozen):
    """How input files are read and validated."""

    columns: ColumnsConfig = ColumnsConfig()
    exclude: ExcludeConfig = Field(default=ExcludeConfig(), description=(
        "rows left out before validation, per table: {transactions: {StockCode: [POST, M]}}; counted and reported"))
    encoding: str = Field(default="utf-8", description="text encoding of CSV files, e.g. latin-1 or cp1252")
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV field separator, e.g. ';'")
    date_format: str | None = Field(default=None,
                                    description="strftime format for all date columns; inferred when unset")
    on_bad_rows: Literal["raise", "reject"] = Field(default="raise", description=(
        "'raise' stops at the first table with unusable rows; 'reject' sets them aside in a rejects report with "
        "the reason"))
    database: str | None = Field(default=None, description=(
        "database of the tables in data.tables: postgresql://USER@HOST:PORT/DB or duckdb:///FILE (default: "
        "$CHURNGUARD_DATABASE_URL); no password: PGPASSWORD, ~/.pgpass or a service file give it"))
    tables: dict[Literal["transactions", "tickets", "customers", "events"], str] = Field(default_factory=dict, description=(
        "the database's table of each input a command is not given, e.g. {transactions: orders}"))

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (e.g. utf-8, latin-1, cp1252)") from None
        return v

    @field_validator("database")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        from churnguard.sources import parse_source

        if v is not None:
            parse_source(v, need_table=False)  # a DatabaseError (a ValueError) names what is wrong
        return v


class FeatureConfig(_Frozen):
    """Feature windows and thresholds; see ``churnguard.features``."""

    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    trend_window_days: int = Field(default=90, gt=0)
    ticket_windows_days: tuple[int, ...] = (30, 90, 365)
    sla_hours: float = Field(default=24.0, gt=0)
    vip_quantile: float = Field(default=0.75, gt=0, lt=1)
    default_lifespan_years: float = Field(default=3.0, gt=0)
    max_lifespan_years: float = Field(default=10.0, gt=0)
    max_categories: int = Field(default=20, gt=0, description="attribute columns with more levels are dropped")
    engagement_windows_days: tuple[int, ...] = Field(default=(30, 90), description=(
        "windows of the events features: sessions and time on site per window and their trend against the "
        "window before; the longest also counts events per type, email rates and channel shares"))
    session_gap_minutes: float = Field(default=30.0, gt=0, description=(
        "events without a session_id are one session while less than this many minutes apart"))

    @field_validator("windows_days", "ticket_windows_days", "engagement_windows_days")
    @classmethod
    def _positive_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows must be a non-empty list of positive day counts")
        return tuple(sorted(set(v)))


class LabelConfig(_Frozen):
    """Churn definition: no purchase in ``(as_of, as_of + horizon_days]`` among customers who bought in the
    ``lookback_days`` up to ``as_of``. ``horizons``: the churn curve's horizons (none: no curve)."""

    horizon_days: int = Field(default=90, gt=0)
    lookback_days: int = Field(default=365, gt=0)
    horizons: tuple[int, ...] = Field(default=(), description=(
        "also predict the churn probability within each of these horizons (days), one churn_probability_<h>d "
        "column each; empty: no curve"))

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(h <= 0 for h in v):
            raise ValueError("horizons must be positive day counts")
        if v and len(set(v)) < 2:
            raise ValueError("a churn curve needs at least 2 different horizons")
        return tuple(sorted(set(v)))

    @model_serializer(mode="wrap")
    def _without_empty_curve(self, handler):
        data = handler(self)  # a config without a curve dumps as before the key existed (same model files)
        if not self.horizons:
            data.pop("horizons", None)
        return data


class SnapshotConfig(_Frozen):
    """Rolling training snapshots, one every ``cadence_days``, newest first. When the data is too short for
    this schedule to leave room for a backtest, training adapts it down to ``shortest_history_days`` and
    ``densest_cadence_days`` (:func:`churnguard.training.snapshots.fit_schedule`)."""

    cadence_days: int = Field(default=30, gt=0)
    max_snapshots: int = Field(default=24, ge=3, description="train + validation + test need at least 3")
    min_history_days: int = Field(default=180, ge=0, description="history required before the first snapshot")
    shortest_history_days: int = Field(default=90, ge=0, description=(
        "on data too short for min_history_days, the history required shrinks in 30-day steps down to this"))
    densest_cadence_days: int = Field(default=7, gt=0, description=(
        "on data too short for cadence_days, the cadence halves down to this"))
    max_train_rows: int | None = Field(default=2_000_000, gt=0, description=(
        "when the training snapshots hold more labelled rows, train on a seeded sample of customers from each "
        "snapshot in proportion to its size (the validation and test snapshots are never sampled); None trains on "
        "every row"))


class ModelConfig(_Frozen):
    """LightGBM settings. Kept small so scoring a million customers with reasons stays fast."""

    # learning_rate 0.08, not 0.05: about half the trees (368 -> 170 on 100k customers) at the same AUC and
    # calibration (benchmarks/HISTORY.md), and every tree costs scoring time (its TreeSHAP reasons)
    params: dict[str, Any] = Field(default_factory=lambda: {
        "objective": "binary", "learning_rate": 0.08, "num_leaves": 16, "max_depth": 5, "min_child_samples": 50,
        "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1})
    num_boost_round: int = Field(default=500, gt=0)
    early_stopping_rounds: int = Field(default=30, gt=0)
    monotone_constraints: dict[str, Literal[-1, 1]] = Field(
        default_factory=lambda: {"recency_days": 1},
        description="features whose effect on risk may only rise (1) or only fall (-1), all else equal")
    calibration: Literal["isotonic", "sigmoid"] = Field(
        default="sigmoid", description="sigmoid (Platt) keeps the model's order; isotonic steps tie customers")
    seed: int = 42
    risk_bands: dict[str, float] = Field(
        default_factory=lambda: {"high": 0.6, "medium": 0.3},
        description="lower probability bound of each band; below every bound is 'low'")


class TrackingConfig(_Frozen):
    """Where the training run is recorded. ``tracking_uri`` None means $MLFLOW_TRACKING_URI or a SQLite file
    ``mlflow.db`` in the working directory."""

    tracking_uri: str | None = None
    experiment: str = "churnguard"
    registered_model: str = "churnguard"
    alias: str = "champion"


class Config(_Frozen):
    """The whole configuration. Each stage receives only its own part."""

    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    labels: LabelConfig = LabelConfig()
    snapshots: SnapshotConfig = SnapshotConfig()
    model: ModelConfig = ModelConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _bands_ordered(self) -> Config:
        if any(not 0 < v < 1 for v in self.model.risk_bands.values()):
            raise ValueError("model.risk_bands thresholds must lie strictly between 0 and 1")
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> Config:
        """A copy with some fields of some sections replaced, validated again (used for CLI flags)."""
        data = self.model_dump()
        for section, values in sections.items():
            data[section].update({k: v for k, v in values.items() if v is not None})
        return _validate(data, "command-line options")


def _validate(data: dict[str, Any], source: str, model: type[BaseModel] | None = None, what: str = "configuration"):
    """Validate a mapping into ``model`` (default :class:`Config`), naming every bad key in one ConfigError."""
    try:
        return (model or Config).model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                             for err in exc.errors())
        raise ConfigError(f"{source}: invalid {what}: {problems}") from None


def _load_yaml(path: str | Path | None, default: str, model: type[BaseModel], what: str):
    """Read YAML from ``path`` (or the packaged ``defaults/<default>``) and validate it into ``model``."""
    if path is None:
        text, source = default_config_text(default), f"built-in {what}"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{what} file not found: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return _validate(data, source, model, what)


def default_config_text(name: str = "train.yaml") -> str:
    """The built-in ``defaults/<name>`` as YAML text (for ``train.yaml``, the values of configs/train.yaml)."""
    return resources.files("churnguard").joinpath(f"defaults/{name}").read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML config; ``None`` gives the built-in defaults.

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping, or has an unknown key or a bad value.
    """
    return _load_yaml(path, "train.yaml", Config, "configuration")


# -- the retention playbook (configs/actions.yaml) ----------------------------------------------------------

Band = Literal["high", "medium", "low", "lost", "never_bought"]  # the last two: customers without a probability
Stage = Literal["new", "active", "at_risk", "lapsing", "lost", "never_bought"]  # churnguard.scoring.rules
Signal = Literal["bad_support", "new_customer", "lapsed", "browsing_not_buying", "gone_quiet"]


class RuleCondition(_Frozen):
    """All given conditions must hold; an empty condition matches everyone."""

    band: tuple[Band, ...] | None = None
    stage: tuple[Stage, ...] | None = None
    value_tier: tuple[Literal["vip", "standard"], ...] | None = None
    signals: tuple[Signal, ...] = ()
    not_signals: tuple[Signal, ...] = ()


class ActionRule(_Frozen):
    """One playbook entry: who it is for, what it costs, how often it keeps a churner."""

    name: str = Field(min_length=1)
    description: str = ""
    when: RuleCondition = RuleCondition()
    cost: float = Field(ge=0)
    success_rate: float = Field(ge=0, le=1)


class Playbook(_Frozen):
    """Ordered rules; the first that matches a customer is their action. The last must match everyone."""

    new_customer_days: int = Field(default=90, gt=0)
    max_value_years: float = Field(default=3.0, gt=0)  # years of a customer's yearly value an action can keep
    max_success_rate: float = Field(default=0.5, gt=0, le=1)  # success rates above it count as it
    actions: tuple[ActionRule, ...]

    def with_success_rates(self, rates: Mapping[str, float]) -> Playbook:
        """This playbook with the success rates of the actions named in ``rates`` replaced (e.g. those a
        campaign read-out measured); other names are ignored."""
        return self.model_copy(update={"actions": tuple(
            a.model_copy(update={"success_rate": float(rates[a.name])}) if a.name in rates else a
            for a in self.actions)})

    def unreachable(self) -> list[str]:
        """Why each rule no customer can ever get is so, one sentence per rule, in playbook order: it comes after a
        rule that matches everyone, names an empty list, needs and refuses one signal, or allows no band that a
        stage it allows can have (a customer with a probability is high, medium or low; the others' band is their
        stage, ``lost`` or ``never_bought``: ``churnguard.lifecycle.in_population``)."""
        import numpy as np

        from churnguard.lifecycle import LIFECYCLE_STAGES, in_population

        scored = dict(zip(LIFECYCLE_STAGES, in_population(np.array(LIFECYCLE_STAGES, dtype=object)).tolist(),
                          strict=True))
        said, catch_all = [], None
        for rule in self.actions:
            w, why = rule.when, None
            empty = [k for k in ("band", "stage", "value_tier") if getattr(w, k) == ()]
            stages = w.stage if w.stage is not None else LIFECYCLE_STAGES
            bands = set(w.band if w.band is not None else ("high", "medium", "low", *LIFECYCLE_STAGES))
            if catch_all is not None:
                why = f"it comes after '{catch_all}', which matches every customer"
            elif empty:
                why = f"its {empty[0]} list is empty"
            elif both := sorted(set(w.signals) & set(w.not_signals)):
                why = f"it both needs and refuses the signal {both[0]}"
            elif not any(bands & ({"high", "medium", "low"} if scored[s] else {s}) for s in stages):
                why = (f"no customer of the stage(s) {', '.join(stages)} has the band(s) {', '.join(w.band or ())} "
                       "(high, medium and low are the bands of customers with a churn probability; the others' band "
                       "is their stage)")
            if why:
                said.append(f"playbook rule '{rule.name}' can never match: {why}")
            if catch_all is None and w == RuleCondition():
                catch_all = rule.name
        return said

    @model_validator(mode="after")
    def _has_fallback(self) -> Playbook:
        last = self.actions[-1].when if self.actions else None
        if last is None or last != RuleCondition():
            raise ValueError("the last action must have an empty 'when' so that every customer gets an action")
        names = [a.name for a in self.actions]
        if len(set(names)) != len(names):
            raise ValueError("action names must be unique")
        return self


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Load ``configs/actions.yaml``-style YAML; ``None`` gives the built-in playbook. A rule that can never
    match (:meth:`Playbook.unreachable`) is logged as a warning: the playbook works, but not as its author meant."""
    playbook = _load_yaml(path, "actions.yaml", Playbook, "playbook")
    for why in playbook.unreachable():
        logger.warning("%s: %s", path or "built-in playbook", why)
    return playbook
