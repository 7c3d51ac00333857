"""churnguard: which customers are about to stop buying, why, and what to do about it.

The data flows through one module or subpackage per stage:
``dataset`` (load and validate) -> ``features`` (the one feature kernel, as of a day) -> ``labels`` ->
``training`` (snapshots, the tracked training run, scorecard) -> ``model`` (calibrated LightGBM, its learned
state and file) -> ``scoring`` (bands, reasons, actions, who to contact). ``engines`` (local, Dask) and
``serving`` (HTTP) only move data to and from them; ``reporting`` reads the results; ``uplift`` learns from past
campaigns which customers an action keeps.

Names are imported lazily so that ``import churnguard`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_MODULES = {
    "churnguard.config": ("Config", "load_config", "ConfigError"),
    "churnguard.dataset": ("DataError", "Tables", "load_tables", "validate_tables"),
    "churnguard.features": ("build_features",),
    "churnguard.labels": ("make_labels",),
    "churnguard.training.snapshots": ("make_training_set", "snapshot_dates"),
    "churnguard.training.run": ("run_training",),
    "churnguard.model": ("ChurnModel", "ModelInfo"),
    "churnguard.population": ("Population",),
    "churnguard.scoring": ("score_frames", "score_tables"),
    "churnguard.demo": ("generate_demo_data", "write_demo_data"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = [  # the names of _EXPORTS (tests/test_config.py checks), listed for tools that read them statically
    "ChurnModel", "Config", "ConfigError", "DataError", "ModelInfo", "Population", "Tables", "__version__",
    "build_features", "generate_demo_data", "load_config", "load_tables", "make_labels", "make_training_set",
    "run_training", "score_frames", "score_tables", "snapshot_dates", "validate_tables", "write_demo_data",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'churnguard' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
