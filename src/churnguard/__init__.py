"""churnguard: which customers are about to stop buying, why, and what to do about it.

The data flows through one module or subpackage per stage:
``dataset`` (load and validate) -> ``features`` (the one feature kernel, as of a day) -> ``labels`` ->
``training`` (snapshots, the tracked training run, scorecard) -> ``model`` (calibrated LightGBM, its learned
state and file) -> ``scoring`` (bands, reasons, actions, who to contact). ``engines`` (local, Dask) and
``serving`` (HTTP) only move data to and from them; ``reporting`` reads the results.

Names are imported lazily so that ``import churnguard`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Config": "churnguard.config",
    "load_config": "churnguard.config",
    "ConfigError": "churnguard.config",
    "DataError": "churnguard.dataset",
    "Tables": "churnguard.dataset",
    "load_tables": "churnguard.dataset",
    "validate_tables": "churnguard.dataset",
    "build_features": "churnguard.features",
    "make_labels": "churnguard.labels",
    "make_training_set": "churnguard.training.snapshots",
    "run_training": "churnguard.training.run",
    "ChurnModel": "churnguard.model",
    "ModelInfo": "churnguard.model",
    "Population": "churnguard.population",
    "score_frames": "churnguard.scoring",
    "score_tables": "churnguard.scoring",
    "snapshot_dates": "churnguard.training.snapshots",
    "generate_demo_data": "churnguard.demo",
    "write_demo_data": "churnguard.demo",
}

__all__ = [
    "ChurnModel",
    "Config",
    "ConfigError",
    "DataError",
    "ModelInfo",
    "Population",
    "Tables",
    "__version__",
    "build_features",
    "generate_demo_data",
    "load_config",
    "load_tables",
    "make_labels",
    "make_training_set",
    "run_training",
    "score_frames",
    "score_tables",
    "snapshot_dates",
    "validate_tables",
    "write_demo_data",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'churnguard' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
