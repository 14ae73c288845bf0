"""The CLV horizon, discount and margin: read by the settings, which must not import the numeric stack."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ClvSettings:
    """CLV = sum over months k = 1..H of E[purchases in month k] * E[spend] * margin / (1 + d)^k,
    with d the monthly rate equivalent to `annual_discount_rate`. A month is 52/12 weeks."""

    horizon_months: int = 12
    annual_discount_rate: float = 0.10
    margin: float = 1.0  # share of spend that is profit; 1.0 reports discounted revenue

    @property
    def monthly_rate(self) -> float:
        return float((1 + self.annual_discount_rate) ** (1 / 12) - 1)
