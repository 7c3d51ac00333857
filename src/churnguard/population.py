"""What training learns about the customer population, as one typed, frozen object.

The feature kernel needs a few quantities that depend on every customer, not on one: the average customer
lifespan behind CLTV, the CLTV from which a customer counts as VIP, the BG/NBD parameters and the kind (number
or category levels) of each free customer attribute. Training estimates them once; scoring, on any engine and
for any number of customers, receives this object and never re-derives them, so one customer's features do
not depend on who else is scored with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from churnguard.btyd import BGNBDParams

__all__ = ["Population"]


@dataclass(frozen=True)
class Population:
    """Population-level state passed to the feature kernel.

    Attributes:
        lifespan_years: average customer lifespan (1 / annual churn rate) used in CLTV.
        vip_cltv_threshold: CLTV from which a customer is ``vip``.
        bgnbd: BG/NBD parameters for ``bg_expected_purchases`` and ``bg_p_alive``; None before they are fitted.
        horizon_days: the churn horizon; ``bg_expected_purchases`` counts purchases over it.
        attributes: free customer attribute column -> its category levels (sorted), or None for a number.
            Columns not listed are not used; None for the whole mapping: decide from the data at hand
            (training).
    """

    lifespan_years: float
    vip_cltv_threshold: float
    bgnbd: BGNBDParams | None = None
    horizon_days: int = 90
    attributes: Mapping[str, tuple[str, ...] | None] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values; :meth:`from_dict` round-trips."""
        return {
            "lifespan_years": float(self.lifespan_years),
            "vip_cltv_threshold": float(self.vip_cltv_threshold),
            "bgnbd": None if self.bgnbd is None else self.bgnbd.to_dict(),
            "horizon_days": int(self.horizon_days),
            "attributes": None if self.attributes is None else {
                k: None if v is None else list(v) for k, v in self.attributes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Population:
        attrs = data.get("attributes")
        return cls(
            lifespan_years=float(data["lifespan_years"]),
            vip_cltv_threshold=float(data["vip_cltv_threshold"]),
            bgnbd=None if data.get("bgnbd") is None else BGNBDParams(**data["bgnbd"]),
            horizon_days=int(data.get("horizon_days", 90)),
            attributes=None if attrs is None else {k: None if v is None else tuple(v) for k, v in attrs.items()},
        )
