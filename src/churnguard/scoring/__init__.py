"""Scores to actions: lifecycle stages, risk bands, value tiers, reasons, playbook actions, expected value and
who to contact.

``rules`` (lifecycle stages and the model's population, bands, signals, the playbook, expected value, selection,
ranks) and ``reasons`` (one phrase per feature, for the features behind the risk) are written once over arrays;
``score`` chains them for ``n`` customers, whichever engine brought the features in, and gives the rows of the
scores file; ``campaign`` writes what the end of ``churnguard score`` says.
"""

from churnguard.scoring.campaign import Campaign, campaign_text
from churnguard.scoring.reasons import N_REASONS, describe
from churnguard.scoring.rules import (
    LIFECYCLE_STAGES,
    assign_actions,
    expected_value,
    lifecycle_stage,
    risk_band,
    select,
    signals,
)
from churnguard.scoring.score import (
    OUTPUT_COLUMNS,
    SCORES_COLUMNS,
    ScoreResult,
    drift_check,
    drift_report,
    model_population,
    no_activity_reason,
    output_columns,
    read_scores,
    score_columns,
    score_features,
    score_frames,
    score_records,
    score_tables,
    select_customers,
    tables_drift,
)

__all__ = [
    "LIFECYCLE_STAGES",
    "N_REASONS",
    "OUTPUT_COLUMNS",
    "SCORES_COLUMNS",
    "Campaign",
    "ScoreResult",
    "assign_actions",
    "campaign_text",
    "describe",
    "drift_check",
    "drift_report",
    "expected_value",
    "lifecycle_stage",
    "model_population",
    "no_activity_reason",
    "output_columns",
    "read_scores",
    "risk_band",
    "score_columns",
    "score_features",
    "score_frames",
    "score_records",
    "score_tables",
    "select",
    "select_customers",
    "signals",
    "tables_drift",
]
