"""Point-in-time customer features.

``kernel`` holds every feature's one definition, as array functions for ``n`` customers; ``build`` feeds it
validated tables (one row per customer, ``build_features``); ``records`` feeds it plain records of a few
customers, as the HTTP server receives them. Every engine reaches the kernel through one of these two.
"""

from churnguard.features.build import build_features, estimate_lifespan_years, to_day
from churnguard.features.kernel import NPS_GROUPS

__all__ = ["NPS_GROUPS", "build_features", "estimate_lifespan_years", "to_day"]
