"""Campaign customers as learning rows: point-in-time features as of ``sent_at`` and whether they bought after.

For each day a campaign was sent, the feature kernel builds every customer's features from the events on or
before that day (``churnguard.features.build_features``: nothing after ``sent_at`` is seen); the outcome is
whether the customer bought (a transaction with a positive amount) on a day in ``(sent_at, sent_at +
horizon_days]``, the window ``campaign-readout`` measures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from churnguard.features import build_features
from churnguard.labels import bought_within
from churnguard.population import Population

if TYPE_CHECKING:
    from churnguard.config import FeatureConfig
    from churnguard.dataset import Tables

__all__ = ["CampaignRows", "campaign_rows"]

logger = logging.getLogger(__name__)

_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class CampaignRows:
    """One row per campaign customer (``customer_id``, ``sent_at``, ``action``, ``treated``, ``bought``, the
    ``campaign_id`` when the table has one, and the features as of ``sent_at``), the population state of the
    latest campaign day (for scoring) and the number of campaign rows whose customer was unknown on ``sent_at``
    (left out)."""

    frame: pd.DataFrame
    population: Population
    unknown: int


def campaign_rows(tables: Tables, campaigns: pd.DataFrame, *, horizon_days: int, config: FeatureConfig
                  ) -> CampaignRows:
    """The learning rows of validated ``campaigns`` (``churnguard.dataset.validate_campaigns``) on ``tables``.

    Raises:
        ValueError: the transactions end before the outcome window of the latest campaign day does, or no
            campaign customer was known on their ``sent_at``.
    """
    last = tables.last_date()
    latest = campaigns["sent_at"].max()
    if latest + horizon_days * _DAY > last:
        raise ValueError(f"the outcome window of the campaign of {latest.date()} ends on "
                         f"{(latest + horizon_days * _DAY).date()}, after the last transaction ({last.date()}): "
                         "learn from it once the transactions reach that day, or shorten --horizon-days")
    parts, population = [], None
    for day, group in campaigns.groupby("sent_at", sort=True):
        feats = build_features(tables, day, config)
        population = Population.from_dict(feats.attrs["population"])
        parts.append(group.drop(columns=["cost"], errors="ignore")
                     .merge(feats.drop(columns=["as_of"]), on="customer_id", how="inner"))
    frame = pd.concat(parts, ignore_index=True)
    if frame.empty:
        raise ValueError("no campaign customer is known from the transactions or customers on the day their "
                         "campaign was sent: are the ids written the same way in both files?")
    unknown = len(campaigns) - len(frame)
    if unknown:
        logger.warning("%d campaign rows left out: their customer was unknown on sent_at", unknown)
    frame.insert(4, "bought", bought_within(tables.transactions, frame["customer_id"], frame["sent_at"],
                                            horizon_days))
    return CampaignRows(frame, population, unknown)
