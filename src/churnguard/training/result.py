"""What a training run produced and where it went: the result every engine's training returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from churnguard.model import ChurnModel

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """What a training run produced and where it went."""

    model: ChurnModel
    model_path: Path
    scorecards: dict[str, dict[str, float]]
    verdict: str
    beats_baselines: bool
    summary: dict[str, Any]
    run_id: str | None = None
    tracking_uri: str | None = None
    registered_version: str | None = None
    champion: bool = False
    promotion: str = ""
    artifacts: list[str] = field(default_factory=list)
