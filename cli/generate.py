"""`crm generate subscriptions`: a subscription business's history with a known churn mechanism.

Writes, to OUT_DIR, files as an ERP or billing export would hold them, plus the mappings that import them:

    customers.csv     external_ref, name, email, plan, contract, tenure_months, payment_method,
                      paperless_billing, monthly_charges
    interactions.csv  customer_ref, type, occurred_at, amount, currency, channel, severity, category,
                      survey, score, external_id (monthly payments, support calls, complaints, NPS surveys)
    statuses.csv      customer_ref, status, reason, churned_at, note (the customers who left)
    customers.yaml, interactions.yaml, statuses.yaml   mappings for `crm import ... --mapping`
    mechanism.json    the churn mechanism below, with its coefficients and the realised churn rate

The churn mechanism (the truth a churn model should recover): a customer churns with probability
sigmoid(z), where

    z = -2.0 + 0.5·[month_to_month] - 1.0·[two_year]
        + 1.8·[month_to_month and tenure_months <= 6]
        + 1.2·[month_to_month and payment_method = electronic_check]
        + 1.4·[plan = basic and monthly_charges >= 1.1 x the plan's list price]
        - 0.015·tenure_months + 0.6·complaints + 0.01·(monthly_charges - 60)

Three of its terms are interactions or thresholds, as in real subscription churn: a month-to-month
customer leaves mostly in its first six months (one that stayed has settled in; a contract customer
cannot leave early at all); paying by electronic check (no automatic payment, each month a decision)
matters without a contract, not with one; and a price increase (charged 10% or more above the plan's
list price: basic 30, standard 60, premium 95) drives away basic-plan customers, who chose the plan for
its price, while standard and premium ones shrug it off. A model with one term per column (plain
logistic regression) can only approximate these.

`complaints` is the number of complaints the customer filed in the last six months. A churned customer's
history stops at its churned_at (1-180 days before --as-of); its reason follows its situation
(poor_service after two complaints or more, price after a price increase on the basic plan or above 80 a
month, otherwise competitor or changed_needs). Everything is drawn
from one seeded generator: the same --seed and --as-of give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

AS_OF = date(2026, 11, 30)
INTERCEPT = -2.0
WEIGHTS = {
    "contract=month_to_month": 0.5,
    "contract=two_year": -1.0,
    "contract=month_to_month & tenure_months<=6": 1.8,
    "contract=month_to_month & payment_method=electronic_check": 1.2,
    "plan=basic & monthly_charges>=1.1*list_price": 1.4,
    "tenure_months": -0.015,
    "complaints": 0.6,
    "monthly_charges-60": 0.01,
}
EARLY_MONTHS = 6  # a month-to-month customer's first months, when most of them leave
PRICE_INCREASE = 1.1  # charged at least this times the plan's list price
PLANS = {"basic": 30.0, "standard": 60.0, "premium": 95.0}
CONTRACTS = (("month_to_month", 0.55), ("one_year", 0.25), ("two_year", 0.20))
PAYMENTS = (("electronic_check", 0.34), ("credit_card", 0.22), ("bank_transfer", 0.22), ("mailed_check", 0.22))
CUSTOMER_COLUMNS = (
    "external_ref",
    "name",
    "email",
    "plan",
    "contract",
    "tenure_months",
    "payment_method",
    "paperless_billing",
    "monthly_charges",
)
# The attributes a churn model may learn from. Only attributes the customer service declares non-personal
# (CUSTOMER_ERASURE_KEEP_ATTRIBUTES) travel in its events, so these must be listed there before the import.
MODEL_ATTRIBUTES = CUSTOMER_COLUMNS[3:]
INTERACTION_COLUMNS = (
    "customer_ref",
    "type",
    "occurred_at",
    "amount",
    "currency",
    "channel",
    "severity",
    "category",
    "survey",
    "score",
    "external_id",
)
STATUS_COLUMNS = ("customer_ref", "status", "reason", "churned_at", "note")
MAPPINGS = {
    "customers": {
        "external_ref": "external_ref",
        "name": "name",
        "email": "email",
        "segment": "=subscription",
        **{f"attributes.{c}": c for c in CUSTOMER_COLUMNS[3:]},
    },
    "interactions": {c: c for c in INTERACTION_COLUMNS},
    "statuses": {c: c for c in STATUS_COLUMNS},
}


@dataclass(frozen=True, slots=True)
class Customer:
    ref: str
    attributes: dict[str, Any]
    complaints: int
    churn_probability: float
    churned_at: date | None
    reason: str | None


def _pick(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def price_increase(attributes: dict[str, Any]) -> bool:
    """Charged 10% or more above the plan's list price."""
    return bool(attributes["monthly_charges"] >= PRICE_INCREASE * PLANS[attributes["plan"]])


def churn_logit(attributes: dict[str, Any], complaints: int) -> float:
    monthly = attributes["contract"] == "month_to_month"
    return float(
        INTERCEPT
        + WEIGHTS["contract=month_to_month"] * monthly
        + WEIGHTS["contract=two_year"] * (attributes["contract"] == "two_year")
        + WEIGHTS["contract=month_to_month & tenure_months<=6"]
        * (monthly and attributes["tenure_months"] <= EARLY_MONTHS)
        + WEIGHTS["contract=month_to_month & payment_method=electronic_check"]
        * (monthly and attributes["payment_method"] == "electronic_check")
        + WEIGHTS["plan=basic & monthly_charges>=1.1*list_price"]
        * (attributes["plan"] == "basic" and price_increase(attributes))
        + WEIGHTS["tenure_months"] * attributes["tenure_months"]
        + WEIGHTS["complaints"] * complaints
        + WEIGHTS["monthly_charges-60"] * (attributes["monthly_charges"] - 60)
    )


def _customer(rng: random.Random, index: int, as_of: date) -> Customer:
    contract = _pick(rng, CONTRACTS)
    longest = {"month_to_month": 36, "one_year": 60, "two_year": 72}[contract]
    plan = rng.choice(tuple(PLANS))
    attributes: dict[str, Any] = {
        "plan": plan,
        "contract": contract,
        "tenure_months": rng.randint(1, longest),
        "payment_method": _pick(rng, PAYMENTS),
        "paperless_billing": rng.random() < 0.6,
        "monthly_charges": round(PLANS[plan] * rng.uniform(0.85, 1.25), 2),
    }
    complaints = min(6, int(rng.expovariate(1.6)))
    probability = 1 / (1 + math.exp(-churn_logit(attributes, complaints)))
    churned_at: date | None = None
    reason: str | None = None
    if rng.random() < probability:
        churned_at = as_of - timedelta(days=rng.randint(1, 180))
        if complaints >= 2:
            reason = "poor_service"
        elif attributes["monthly_charges"] > 80 or (plan == "basic" and price_increase(attributes)):
            reason = "price"
        else:
            reason = rng.choice(("competitor", "changed_needs"))
    return Customer(f"sub-{index:07d}", attributes, complaints, probability, churned_at, reason)


def _moment(rng: random.Random, day: date) -> str:
    at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.randint(8 * 3600, 20 * 3600))
    return at.isoformat().replace("+00:00", "Z")


def _interactions(rng: random.Random, customer: Customer, as_of: date) -> Iterator[dict[str, Any]]:
    end = customer.churned_at or as_of
    tenure_days = customer.attributes["tenure_months"] * 30
    n = 0

    def row(kind: str, day: date, **fields: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"customer_ref": customer.ref, "type": kind, "occurred_at": _moment(rng, day),
                "external_id": f"{customer.ref}-{n}", **fields}  # fmt: skip

    def day_within(days: int) -> date:
        return end - timedelta(days=rng.randint(0, max(0, min(days, tenure_days) - 1)))

    for month in range(min(customer.attributes["tenure_months"], 6)):
        day = end - timedelta(days=30 * month + rng.randint(0, 4))
        yield row("purchase", day, amount=f"{customer.attributes['monthly_charges']:.2f}", currency="EUR",
                  channel="billing")  # fmt: skip
    for _ in range(customer.complaints):
        yield row("complaint", day_within(180), channel="phone", severity=rng.choice(("medium", "high")),
                  category=rng.choice(("service", "billing", "product_quality")))  # fmt: skip
    for _ in range(min(8, int(rng.expovariate(1 / 2.0)))):
        yield row(rng.choice(("call", "chat", "email")), day_within(365), channel="support")
    if rng.random() < 0.5:
        score = max(0, min(10, round(rng.gauss(8 - 1.5 * customer.complaints, 1.5))))
        yield row("survey", day_within(365), channel="email", survey="nps", score=score)


def subscriptions(n: int, seed: int, as_of: date = AS_OF) -> Iterator[tuple[Customer, list[dict[str, Any]]]]:
    """Customers in order with their interactions, oldest first; deterministic for (n, seed, as_of)."""
    rng = random.Random(seed)
    for index in range(1, n + 1):
        customer = _customer(rng, index, as_of)
        history = sorted(_interactions(rng, customer, as_of), key=lambda r: r["occurred_at"])
        yield customer, history


def _extra_contacts(customer: Customer, count: int, seed: int, first: int, as_of: date) -> list[dict[str, Any]]:
    """`count` more support contacts of a customer, numbered from `first`, drawn from a generator of their
    own (the customer's seed and reference) so the rest of the data set is unchanged: padding a file to a
    round size for a benchmark. Contacts carry no churn signal, so the mechanism stays the truth."""
    rng = random.Random(f"{seed}:{customer.ref}:extra")
    end = customer.churned_at or as_of
    span = min(365, customer.attributes["tenure_months"] * 30)
    return [
        {
            "customer_ref": customer.ref,
            "type": rng.choice(("call", "chat", "email")),
            "occurred_at": _moment(rng, end - timedelta(days=rng.randint(0, span - 1))),
            "external_id": f"{customer.ref}-{first + k}",
            "channel": "support",
        }
        for k in range(count)
    ]


def padded(n: int, seed: int, as_of: date, interactions: int) -> Iterator[tuple[Customer, list[dict[str, Any]]]]:
    """subscriptions() with support contacts added so that the histories hold `interactions` rows in all,
    spread evenly over the customers (the generated rows are kept as they are). A first pass counts them."""
    base = sum(len(history) for _, history in subscriptions(n, seed, as_of))
    extra = interactions - base
    if extra < 0:
        raise ValueError(f"{n} customers already have {base} interactions, more than {interactions}")
    for index, (customer, history) in enumerate(subscriptions(n, seed, as_of), start=1):
        count = extra * index // n - extra * (index - 1) // n
        if count:
            added = _extra_contacts(customer, count, seed, len(history) + 1, as_of)
            history = sorted(history + added, key=lambda r: r["occurred_at"])
        yield customer, history


def write(out: Path, n: int, seed: int, as_of: date = AS_OF, interactions: int | None = None) -> dict[str, Any]:
    """Write the data set to `out`; returns what mechanism.json holds. With `interactions`, the histories are
    padded with support contacts to exactly that many rows (see padded())."""
    out.mkdir(parents=True, exist_ok=True)
    generated = subscriptions(n, seed, as_of) if interactions is None else padded(n, seed, as_of, interactions)
    counts = {"customers": 0, "interactions": 0, "churned": 0}
    with (
        (out / "customers.csv").open("w", newline="", encoding="utf-8") as customers_file,
        (out / "interactions.csv").open("w", newline="", encoding="utf-8") as interactions_file,
        (out / "statuses.csv").open("w", newline="", encoding="utf-8") as statuses_file,
    ):
        customers = csv.DictWriter(customers_file, CUSTOMER_COLUMNS, lineterminator="\n")
        histories = csv.DictWriter(interactions_file, INTERACTION_COLUMNS, lineterminator="\n")
        statuses = csv.DictWriter(statuses_file, STATUS_COLUMNS, lineterminator="\n")
        for writer in (customers, histories, statuses):
            writer.writeheader()
        for customer, history in generated:
            number = int(customer.ref.split("-")[1])
            attributes = {k: str(v).lower() if isinstance(v, bool) else v for k, v in customer.attributes.items()}
            customers.writerow(
                {
                    "external_ref": customer.ref,
                    "name": f"Subscriber {number}",
                    "email": f"subscriber{number}@example.com",
                    **attributes,
                }
            )
            histories.writerows(history)
            counts["customers"] += 1
            counts["interactions"] += len(history)
            if customer.churned_at is not None:
                counts["churned"] += 1
                statuses.writerow(
                    {
                        "customer_ref": customer.ref,
                        "status": "churned",
                        "reason": customer.reason,
                        "churned_at": customer.churned_at.isoformat(),
                        "note": "from the billing system",
                    }
                )
    for kind, mapping in MAPPINGS.items():
        lines = [f"{target}: {json.dumps(column)}" for target, column in mapping.items()]
        (out / f"{kind}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mechanism = {
        "seed": seed,
        "as_of": as_of.isoformat(),
        "intercept": INTERCEPT,
        "weights": WEIGHTS,
        **counts,
        **({} if interactions is None else {"padded_to_interactions": interactions}),
        "churn_rate": round(counts["churned"] / max(1, counts["customers"]), 4),
    }
    (out / "mechanism.json").write_text(json.dumps(mechanism, indent=2) + "\n", encoding="utf-8")
    return mechanism


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("generate", help="generate data sets")
    kinds = parser.add_subparsers(dest="dataset", required=True)
    sub = kinds.add_parser("subscriptions", help="customers, interactions and churn statuses with a known mechanism")
    sub.add_argument("out", type=Path, help="directory for the files")
    sub.add_argument("--customers", type=int, default=5000, help="how many (default %(default)s)")
    sub.add_argument("--seed", type=int, default=7)
    sub.add_argument("--as-of", type=date.fromisoformat, default=AS_OF, help="the day the export was taken")
    sub.add_argument(
        "--interactions", type=int, help="pad the histories with support contacts to exactly this many rows"
    )


def run(args: argparse.Namespace) -> int:
    if args.customers < 1:
        print("error: --customers must be at least 1")
        return 2
    try:
        mechanism = write(args.out, args.customers, args.seed, args.as_of, args.interactions)
    except ValueError as exc:
        print(f"error: --interactions: {exc}")
        return 2
    print(
        f"{mechanism['customers']} customers, {mechanism['interactions']} interactions, "
        f"{mechanism['churned']} churned ({mechanism['churn_rate']:.1%}) written to {args.out}"
    )
    keep = json.dumps(["tier", "value_tier", *MODEL_ATTRIBUTES], separators=(",", ":"))
    print(f"for a churn model that learns from the attributes, start the customer service with\n"
          f"  CUSTOMER_ERASURE_KEEP_ATTRIBUTES='{keep}'")  # fmt: skip
    return 0


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(prog="python -m cli.generate")
    add_parser(main_parser.add_subparsers(dest="command", required=True))
    raise SystemExit(run(main_parser.parse_args()))
