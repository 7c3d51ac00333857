"""Past retention campaigns with a control group in the demo world, whose true effects are known.

The demo world holds two campaigns (:func:`simulate_campaigns`), ``horizon_days + 30`` days apart, the later one
``horizon_days + 30`` days before the last transaction: each outcome window ends before the next campaign is sent,
and the later campaign is the uplift scorecard's test set. On a campaign's ``sent_at`` every customer with a
purchase in the 365 days before is drawn an action (``win_back_offer``, a time-limited discount, or ``service_recovery``)
and, with probability ``treated_share``, contacted; the others are the control group. The effects depend on what
the data showed on ``sent_at``, so they can be learned from point-in-time features:

* the discount keeps 60% of the price-sensitive customers who would have stopped buying (average order value
  in the lowest 40% of the customers drawn), and 3% of the others;
* service recovery keeps 60% of those with a poor support experience in the 180 days before (a first answer
  after 12 hours or none yet, or a CSAT of 3 or less), and 3% of the others;
* customers with no purchase in the 120 days before are mostly lost causes: each action keeps a fifth as many
  of them;
* any contact puts off half of the new customers (signed up in the 180 days before) who would have bought: they
  stop buying.

A customer *buys* when they make a purchase on a day in ``(sent_at, sent_at + horizon_days]``. Each customer's
outcome without contact (the simulated world) and with each action (the same random draws) is the truth
(:attr:`CampaignWorld.truth`, one row per campaign and customer); the transactions show, for the contacted
customers, the outcome of their action: a kept customer gets one more order in the window, a put-off customer
loses every purchase after ``sent_at``. The later campaign is drawn on the transactions the earlier one left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnguard.config import Playbook

__all__ = ["CAMPAIGN_ACTIONS", "CAMPAIGN_PLAYBOOK", "CampaignWorld", "campaign_truth", "retained", "simulate_campaign",
           "simulate_campaigns"]

CAMPAIGN_ACTIONS = ("win_back_offer", "service_recovery")
# The campaign's actions as a playbook: service recovery for a poor support experience, else the discount, for
# customers of the model's population (what risk and uplift targeting choose among on this world).
CAMPAIGN_PLAYBOOK = Playbook.model_validate({"actions": [
    {"name": "service_recovery", "when": {"stage": ["new", "active", "at_risk", "lapsing"],
                                          "signals": ["bad_support"]}, "cost": 15, "success_rate": 0.35},
    {"name": "win_back_offer", "when": {"stage": ["new", "active", "at_risk", "lapsing"]}, "cost": 10,
     "success_rate": 0.15},
    {"name": "no_action", "when": {}, "cost": 0, "success_rate": 0}]})
_COST = {a.name: a.cost for a in CAMPAIGN_PLAYBOOK.actions}
_KEEP = {"win_back_offer": (0.6, 0.03), "service_recovery": (0.6, 0.03)}  # (with the trait, without it)
_PUT_OFF = 0.5
_LAPSED = 0.2  # share of the keep rate left for a customer with no purchase in the last 120 days
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class CampaignWorld:
    """The transactions with the campaigns' effects, the campaigns table and, per campaign (``campaign_id``,
    ``sent_at``) and customer drawn, the truth: the traits behind the effects and whether they buy without
    contact (``bought_untreated``) and with each action (``bought_<action>``)."""

    transactions: pd.DataFrame
    campaigns: pd.DataFrame
    truth: pd.DataFrame


def _traits(tx: pd.DataFrame, tickets: pd.DataFrame, ids: pd.Index, sent_at: pd.Timestamp) -> pd.DataFrame:
    """Per customer in ``ids``: price-sensitive, a recent poor support experience, a new customer, lapsed; from
    the rows on or before ``sent_at`` only (a customer's first purchase stands for the signup)."""
    end = sent_at + _DAY
    buys = tx[(tx["amount"] > 0) & (tx["timestamp"] < end) & (tx["timestamp"] >= end - 365 * _DAY)]
    basket = buys.groupby("customer_id")["amount"].mean().reindex(ids)
    first = tx[tx["amount"] > 0].groupby("customer_id")["timestamp"].min().reindex(ids)
    latest = buys.groupby("customer_id")["timestamp"].max().reindex(ids)
    tk = tickets[(tickets["opened_at"] < end) & (tickets["opened_at"] >= end - 180 * _DAY)]
    answered = tk["first_response_at"].where(tk["first_response_at"] < end)
    bad = (answered.isna() | (answered - tk["opened_at"] > pd.Timedelta(hours=12))
           | ((tk["csat"] <= 3) & (tk["resolved_at"] < end)))
    bad_ids = pd.Index(tk.loc[bad.to_numpy(), "customer_id"].unique())
    return pd.DataFrame({"price_sensitive": (basket <= basket.quantile(0.4)).to_numpy(),
                         "bad_support": ids.isin(bad_ids), "new_customer": (first >= end - 180 * _DAY).to_numpy(),
                         "lapsed": (latest < end - 120 * _DAY).to_numpy()},
                        index=ids)


def _outcomes(traits: pd.DataFrame, bought: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Whether each customer buys without contact and with each action (one set of random draws for all)."""
    keep_draw, put_off_draw = rng.uniform(size=len(traits)), rng.uniform(size=len(traits))
    put_off = traits["new_customer"].to_numpy() & (put_off_draw < _PUT_OFF)
    trait = {"win_back_offer": "price_sensitive", "service_recovery": "bad_support"}
    out = {"bought_untreated": bought}
    for action, (high, low) in _KEEP.items():
        rate = np.where(traits[trait[action]].to_numpy(), high, low) * np.where(traits["lapsed"], _LAPSED, 1.0)
        keep = keep_draw < rate
        out[f"bought_{action}"] = np.where(bought, ~put_off, keep)
    return out


def _apply(tx: pd.DataFrame, who: pd.DataFrame, sent_at: pd.Timestamp, horizon_days: int,
           rng: np.random.Generator) -> pd.DataFrame:
    """The transactions as the contacted customers' outcomes make them: one order in the window for each
    customer kept, no purchase after ``sent_at`` for each one put off."""
    end = sent_at + _DAY
    gained, lost = who.index[who["gained"]], who.index[who["lost"]]
    drop = tx["customer_id"].isin(lost).to_numpy() & (tx["timestamp"] >= end).to_numpy()
    last = tx[tx["customer_id"].isin(gained) & (tx["amount"] > 0)].groupby("customer_id").last().reindex(gained)
    days = rng.integers(1, horizon_days + 1, len(gained))
    hours = rng.integers(9 * 3600, 21 * 3600, len(gained))
    added = pd.DataFrame({
        "customer_id": gained.astype("str"),
        "timestamp": (sent_at + pd.to_timedelta(days, unit="D") + pd.to_timedelta(hours, unit="s")).astype(
            tx["timestamp"].dtype),
        "amount": last["amount"].to_numpy(), "order_id": [f"K{sent_at:%y%m%d}-{i:06d}" for i in range(1, len(gained) + 1)],
        "quantity": 1, "category": last["category"].to_numpy(), "channel": last["channel"].to_numpy(),
        "discount": 0.0})
    return pd.concat([tx[~drop], added[tx.columns]], ignore_index=True)


def simulate_campaigns(transactions: pd.DataFrame, tickets: pd.DataFrame, *, seed: int = 0, horizon_days: int = 90,
                       treated_share: float = 0.5) -> CampaignWorld:
    """Draw the demo world's two campaigns (see the module docstring), the earlier first; the later one is drawn
    on the transactions the earlier one left.

    Raises:
        ValueError: as :func:`simulate_campaign`, for either campaign.
    """
    gap = (horizon_days + 30) * _DAY
    later = transactions["timestamp"].max().normalize() - gap
    worlds, tx = [], transactions
    for k, day in enumerate((later - gap, later)):
        worlds.append(simulate_campaign(tx, tickets, seed=seed, sent_at=day, horizon_days=horizon_days,
                                        treated_share=treated_share, stream=k))
        tx = worlds[-1].transactions
    return CampaignWorld(tx, pd.concat([w.campaigns for w in worlds], ignore_index=True),
                         pd.concat([w.truth for w in worlds], ignore_index=True))


def simulate_campaign(transactions: pd.DataFrame, tickets: pd.DataFrame, *, seed: int = 0,
                      sent_at: str | pd.Timestamp | None = None, horizon_days: int = 90,
                      treated_share: float = 0.5, stream: int = 0) -> CampaignWorld:
    """Draw one campaign (see the module docstring) on the demo world's ``transactions`` and ``tickets``;
    ``stream``: which of the seed's random streams draws it.

    Raises:
        ValueError: ``sent_at`` leaves no full outcome window before the last transaction, or nobody bought in
            the 365 days before it.
    """
    rng = np.random.default_rng([seed, 18, stream])
    last = transactions["timestamp"].max().normalize()
    day = last - (horizon_days + 30) * _DAY if sent_at is None else pd.Timestamp(sent_at).normalize()
    if day + horizon_days * _DAY > last:
        raise ValueError(f"a campaign on {day.date()} has no full {horizon_days}-day outcome window before the "
                         f"last transaction ({last.date()})")
    end, buys = day + _DAY, transactions[transactions["amount"] > 0]
    before = buys[(buys["timestamp"] < end) & (buys["timestamp"] >= end - 365 * _DAY)]
    ids = pd.Index(np.sort(before["customer_id"].unique()), dtype="str")
    if ids.empty:
        raise ValueError(f"nobody bought in the 365 days up to {day.date()}: there is nobody to contact")
    after = buys[(buys["timestamp"] >= end) & (buys["timestamp"] < end + horizon_days * _DAY)]
    traits = _traits(transactions, tickets, ids, day)
    truth = traits.assign(**_outcomes(traits, ids.isin(after["customer_id"].unique()), rng))
    action = np.asarray(CAMPAIGN_ACTIONS, dtype=object)[rng.integers(0, len(CAMPAIGN_ACTIONS), len(ids))]
    treated = rng.uniform(size=len(ids)) < treated_share
    realised = np.choose(action == CAMPAIGN_ACTIONS[1], [truth[f"bought_{a}"].to_numpy() for a in CAMPAIGN_ACTIONS])
    base = truth["bought_untreated"].to_numpy()
    who = pd.DataFrame({"gained": treated & realised & ~base, "lost": treated & ~realised & base}, index=ids)
    campaigns = pd.DataFrame({"customer_id": ids.to_numpy(), "sent_at": day, "action": action, "treated": treated,
                              "campaign_id": f"demo-{day.date()}", "cost": [_COST[a] for a in action]})
    truth = truth.assign(action=action, treated=treated).rename_axis("customer_id").reset_index()
    truth.insert(0, "campaign_id", f"demo-{day.date()}")
    truth.insert(1, "sent_at", day)
    return CampaignWorld(_apply(transactions, who, day, horizon_days, rng), campaigns, truth)


def campaign_truth(truth: pd.DataFrame, sent_at: pd.Timestamp) -> pd.DataFrame:
    """The truth of the campaign sent on ``sent_at``, indexed by ``customer_id`` (what :func:`retained` reads)."""
    return truth[(truth["sent_at"] == pd.Timestamp(sent_at)).to_numpy()].set_index("customer_id")


def retained(scores: pd.DataFrame, truth: pd.DataFrame) -> int:
    """Campaign customers who buy within the horizon, on one campaign's simulated ``truth``
    (:func:`campaign_truth`): with the action they were
    selected for when contacted (selected, not in the control group), else without contact."""
    s = scores.set_index("customer_id").reindex(truth.index)
    contacted = s["selected"].fillna(False).to_numpy(dtype=bool) & ~s["control_group"].fillna(False).to_numpy(
        dtype=bool)
    bought = truth["bought_untreated"].to_numpy().copy()
    for a in CAMPAIGN_ACTIONS:
        chosen = contacted & (s["action"] == a).to_numpy()
        bought[chosen] = truth[f"bought_{a}"].to_numpy()[chosen]
    return int(bought.sum())
