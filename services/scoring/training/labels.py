"""The churn model's labelled set, with an account of who was used and who was left out and why. Pure.

Every customer whose status is a label (churned with a churn date: 1; active: 0) is an example:

* with event history, its latest snapshot scored from an interaction, complaint or survey strictly
  before its churn date (churned) or at or before the cutoff (active), as it stood then;
* without one (a customer imported with attributes and no interactions, or whose events all came
  after the label time), its profile: segment and attributes, the event features empty, which is
  exactly what scoring sees for such a customer.

A churned customer imported with its churn date counts exactly as one whose churn was recorded live:
both reach scoring as a status and a churn date. Left out: statuses that are no label (prospect,
won_back), churned customers without a churn date, erased customers.

An audience (a segment, attribute values) limits training to the customers it matches, e.g. one
company's book or one import's customers; the others are counted as outside it, not as left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Score records caused by these carry no event features: a customer's profile, not its history.
PROFILE_CAUSES = frozenset({"customer.created", "customer.updated", "customer.status_changed"})
# Rescorings (a model job's, the silent-customer sweep's) state a customer as of a later clock, not at an
# event: an active customer would be seen days after its last contact and a churned one never (its
# rescorings come after its churn date), a difference that gives the label away.
RESCORE_CAUSE_PREFIXES = ("job.", "scoring.sweep")

LEFT_OUT_STATUS = "status is not a label (prospect or won_back)"
LEFT_OUT_NO_DATE = "churned without a churn date"
LEFT_OUT_NO_PROFILE = "no snapshot in time and no profile"


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    status: str | None
    churned_at: datetime | None
    profile: dict[str, Any] | None = None  # the attribute-only snapshot, when there is one
    segment: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def _same(held: Any, wanted: Any) -> bool:
    # True is not 1 here: an attribute "true" and a count 1 are different facts.
    if isinstance(held, bool) or isinstance(wanted, bool):
        return isinstance(held, bool) and isinstance(wanted, bool) and held == wanted
    return bool(held == wanted)


@dataclass(frozen=True, slots=True)
class Audience:
    """The customers a training run may use: of this segment, with these attribute values (all must hold)."""

    segment: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def matches(self, customer: Customer) -> bool:
        if self.segment is not None and customer.segment != self.segment:
            return False
        return all(
            name in customer.attributes and _same(customer.attributes[name], value)
            for name, value in self.attributes.items()
        )

    @property
    def everyone(self) -> bool:
        return self.segment is None and not self.attributes


@dataclass(frozen=True, slots=True)
class Snapshot:
    customer_id: str
    as_of: datetime
    snapshot: dict[str, Any]
    caused_by_type: str = ""


@dataclass(slots=True)
class TrainingSet:
    ids: list[str] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    from_history: int = 0  # examples built from event history
    from_profile: int = 0  # examples built from attributes alone
    left_out: Counter[str] = field(default_factory=Counter)
    audience: Audience = field(default_factory=Audience)
    outside: int = 0  # customers the audience does not match

    def report(self) -> dict[str, Any]:
        """What the training job's result says about its data."""
        churned = sum(self.labels)
        report: dict[str, Any] = {
            "used": {"churned": churned, "active": len(self.labels) - churned},
            "from_history": self.from_history,
            "from_profile": self.from_profile,
            "left_out": dict(sorted(self.left_out.items())),
        }
        if not self.audience.everyone:
            report["audience"] = {
                "segment": self.audience.segment,
                "attributes": dict(self.audience.attributes),
                "customers_outside": self.outside,
            }
        return report


def build(
    customers: list[Customer], history: list[Snapshot], cutoff: datetime, audience: Audience | None = None
) -> TrainingSet:
    """The labelled examples, in customer id order, without leakage (see the module doc)."""
    out = TrainingSet(audience=audience or Audience())
    bound: dict[str, tuple[datetime, int]] = {}
    for c in customers:
        if not out.audience.matches(c):
            out.outside += 1
        elif c.status == "churned":
            if c.churned_at is None:
                out.left_out[LEFT_OUT_NO_DATE] += 1
            else:
                bound[c.customer_id] = (c.churned_at, 1)
        elif c.status == "active":
            bound[c.customer_id] = (cutoff, 0)
        else:
            out.left_out[LEFT_OUT_STATUS] += 1
    latest: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for h in history:
        limit = bound.get(h.customer_id)
        if limit is None or h.caused_by_type in PROFILE_CAUSES or h.caused_by_type.startswith(RESCORE_CAUSE_PREFIXES):
            continue
        in_time = h.as_of < limit[0] if limit[1] == 1 else h.as_of <= limit[0]
        if in_time and (h.customer_id not in latest or h.as_of >= latest[h.customer_id][0]):
            latest[h.customer_id] = (h.as_of, h.snapshot)
    profiles = {c.customer_id: c.profile for c in customers}
    for customer_id in sorted(bound):
        if customer_id in latest:
            snapshot = latest[customer_id][1]
            out.from_history += 1
        elif profiles.get(customer_id) is not None:
            snapshot = profiles[customer_id] or {}
            out.from_profile += 1
        else:
            out.left_out[LEFT_OUT_NO_PROFILE] += 1
            continue
        out.ids.append(customer_id)
        out.snapshots.append(snapshot)
        out.labels.append(bound[customer_id][1])
    return out
