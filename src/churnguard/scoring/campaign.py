"""What the end of ``churnguard score`` says: how each action's expected value is made, who to contact, what it
costs, and when and how to read the campaign out.

:func:`value_breakdown` recomputes, per action, the parts of the expected value of the customers to contact
with the rules of :mod:`churnguard.scoring.rules` (P(churn) x value, the success rate, the cost), so the
figures printed multiply out to the expected value in the scores; :func:`campaign_text` writes it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._text import plural
from churnguard.scoring import rules

if TYPE_CHECKING:
    from churnguard.config import Playbook
    from churnguard.reporting.monitoring import MeasuredRates

__all__ = ["Campaign", "campaign_text", "value_breakdown"]


@dataclass(frozen=True)
class Campaign:
    """What the campaign text quotes besides the scores: the playbook and budget of the run, the model's
    outcome horizon and learned lifespan, and the transactions and config files (for the read-out command)."""

    playbook: Playbook
    budget: float | None
    horizon_days: int
    lifespan_years: float
    transactions: str | Path = "<transactions>"
    config: str | Path | None = None  # the config that read the files, when one was given
    measured: MeasuredRates | None = None  # success rates a campaign read-out measured (in the playbook already)
    # without ``config``: whether the model's own data section (which read the files) is not the built-in one, so
    # that the read-out, which reads them with a config file, needs the config file the model was trained with
    model_data_config: bool = False


def value_breakdown(contacted: pd.DataFrame, campaign: Campaign) -> pd.DataFrame:
    """Per action of the ``contacted`` customers (score rows): customers, the average P(churn) x value
    (P = 1 without a probability), the success rate and cost assumed, the expected value per customer
    (= P x value x success rate - cost) and in all; by total expected value, largest first."""
    p = contacted["churn_probability"].to_numpy(dtype="float64")
    value = rules.value_at_stake(contacted["clv"].to_numpy(dtype="float64"), campaign.lifespan_years,
                                 campaign.playbook.max_value_years)
    frame = pd.DataFrame({"action": contacted["action"].to_numpy(), "at_stake": np.where(np.isnan(p), 1.0, p) * value,
                          "ev": contacted["expected_value"].to_numpy(dtype="float64")})
    out = frame.groupby("action", sort=False).agg(customers=("ev", "size"), at_stake=("at_stake", "mean"),
                                                  ev_total=("ev", "sum"))
    rates, costs = rules.success_rates(campaign.playbook), {r.name: r.cost for r in campaign.playbook.actions}
    out["success_rate"] = [rates[a] for a in out.index]
    out["cost"] = [costs[a] for a in out.index]
    out["ev_each"] = out["ev_total"] / out["customers"]
    return out.sort_values("ev_total", ascending=False)[["customers", "at_stake", "success_rate", "cost", "ev_each",
                                                        "ev_total"]]


def _table(breakdown: pd.DataFrame) -> list[str]:
    rows = [(str(r.Index), f"{r.customers:,}", f"{r.at_stake:,.2f}", f"{r.success_rate:.0%}", f"{r.cost:,.2f}",
             f"{r.ev_each:,.2f}", f"{r.ev_total:,.0f}") for r in breakdown.itertuples()]
    head = ("action", "contacts", "P x value", "success", "cost", "EV each", "EV total")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                   strict=True)))
            for r in [head, *rows]]


def _assumptions(campaign: Campaign) -> list[str]:
    book = campaign.playbook
    years = min(campaign.lifespan_years, book.max_value_years)
    capped = [r.name for r in book.actions if r.success_rate > book.max_success_rate]
    lines = [(f"  value: CLTV over {years:.1f} of the {campaign.lifespan_years:.1f} years of lifespan learned at "
             "training"), f"    (at most the playbook's max_value_years, {book.max_value_years:g})"]
    if capped:
        lines.append(f"  success rates above the playbook's max_success_rate ({book.max_success_rate:.0%}) count "
                     f"as it: {', '.join(capped)}")
    return lines + _rates_source(campaign)


def _rates_source(campaign: Campaign) -> list[str]:
    measured = campaign.measured
    if measured is None:
        return ["  success rates: the playbook's; --readout R takes those campaign-readout measured"]
    lines = [f"  {line}" for line in measured.lines()]
    known = {r.name for r in campaign.playbook.actions}
    others = sorted(known - set(measured.rates) - set(measured.not_used))
    if others:
        lines.append(f"    the playbook's for the actions the campaign did not use: {', '.join(others)}")
    return lines


def _nobody(scores: pd.DataFrame, campaign: Campaign) -> str:
    """Why nobody is to be contacted: no customer worth a contact, or a budget below the cheapest such contact."""
    cost = scores["action_cost"].to_numpy(dtype="float64")
    worth = rules.worth_contacting(scores["expected_value"].to_numpy(dtype="float64"), cost)
    if campaign.budget is None or not worth.any():
        return "  nobody to contact: no customer has a positive expected value"
    return (f"  nobody to contact: the budget, {campaign.budget:,.2f}, is below the cheapest contact with a "
            f"positive expected value ({cost[worth].min():,.2f}, for {plural(int(worth.sum()), 'customer')})")


def _next_steps(contacted: pd.DataFrame, control: int, out: str | Path, as_of: pd.Timestamp | None,
                campaign: Campaign, scores: pd.DataFrame) -> list[str]:
    lines = ["next:"]
    if contacted.empty:
        return [*lines, _nobody(scores, campaign)]
    lines += [f"  contact {plural(len(contacted), 'customer')}: selected = True and control_group = False in",
              (f"    {out}; cost {contacted['action_cost'].sum():,.2f}, expected value "
              f"{contacted['expected_value'].sum():,.2f}")]
    if control:
        lines.append(f"  do not contact the {control:,} in the control group: they show what contact changes")
    end = "the outcome window" if as_of is None else \
        (pd.Timestamp(as_of) + pd.Timedelta(days=campaign.horizon_days)).date().isoformat()
    since = "as_of" if as_of is None else pd.Timestamp(as_of).date().isoformat()
    config = campaign.config if campaign.config is not None else "CONFIG" if campaign.model_data_config else None
    lines += [f"  after {end} ({campaign.horizon_days} days after {since}), read the campaign out on",
              "  transactions up to that day:",
              f"    churnguard campaign-readout --scores {out} \\",
              f"      --transactions {campaign.transactions} --horizon-days {campaign.horizon_days}"
              + ("" if config is None else f" -c {config}")]
    if campaign.config is None and campaign.model_data_config:
        lines.append("    (CONFIG: the config file the model was trained with: its data section read these files)")
    return lines


def campaign_text(scores: pd.DataFrame, out: str | Path, as_of: pd.Timestamp | None, campaign: Campaign) -> str:
    """How the selection was made, how each action's expected value is made, and what to do next."""
    used = ["control_group", "churn_probability", "clv", "action", "expected_value", "action_cost"]
    chosen = scores[used][scores["selected"].to_numpy(dtype=bool)]  # the rows of these columns only
    contacted = chosen[~chosen["control_group"].to_numpy(dtype=bool)]
    how = ("no --budget, so every customer with a positive expected value" if campaign.budget is None
           else f"best expected value per unit of cost, within a budget of {campaign.budget:,.2f}")
    lines = [f"selection: {how}"]
    if not contacted.empty:
        lines += ["expected value (EV) per contact = P(churn) x value x success rate - cost:",
                  *_table(value_breakdown(contacted, campaign)), *_assumptions(campaign)]
    return "\n".join([*lines, *_next_steps(contacted, len(chosen) - len(contacted), out, as_of, campaign, scores)])
