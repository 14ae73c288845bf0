"""Scoring benchmarks: CPU per rescoring event in the handler path, and a value-model refit on 100k customers.

    .venv/bin/python -m bench.scoring_bench [--events 20000] [--single-events 2000] [--customers 100000]

1. Handler path: purchase and complaint events for 1,000 customers applied through the service's own
   handlers against SQLite, first in consumer-sized batches (500 events, one transaction each), then
   one event per transaction (events arriving one at a time). CPU is time.process_time (all threads,
   so aiosqlite's worker thread counts) from before a transaction's first handler to after its commit,
   where the queued rescorings are scored together and the rows written. Reported per event: the mean
   (all CPU / all events) and the p50 / p95 over transactions of (transaction CPU / its events). Each
   run with the rules only, then with an active value model and a trained churn model (the closed
   forms and the compiled logistic model).
2. Refit: BG/NBD + Gamma-Gamma maximum likelihood, CLV of every customer and the tier thresholds on
   synthetic customers drawn from the BG/NBD story (wall time; single process).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from contracts.interaction import InteractionRecorded
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent, Received
from services.scoring.handlers import HANDLERS
from services.scoring.main import metadata
from services.scoring.training import churn_model
from services.scoring.training.models import ChurnModelVersion, ValueModelVersion
from services.scoring.value import value_model as vm
from services.scoring.value.valuation import ValueModel, fit_value_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 500


def events(n: int, customers: int, seed: int = 1) -> list[Received]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = "purchase" if rng.random() < 0.7 else "complaint"
        data = InteractionRecorded(
            customer_id=f"c{int(rng.integers(customers)):05d}",
            interaction_id=f"i{i}",
            type=kind,
            occurred_at=T0 + timedelta(hours=i),
            amount=Decimal(str(round(float(rng.gamma(2, 25)), 2))) if kind == "purchase" else None,
            severity="medium" if kind == "complaint" else None,
        )
        out.append(Received(envelope=CloudEvent.wrap(data, source="/crm/interaction"), data=data))
    return out


async def handler_path(n: int, *, with_models: bool, batch: int = BATCH) -> dict[str, float]:
    """CPU per event through the handlers, `batch` events per transaction (the consumer's batch).

    Each batch's CPU runs from before its first handler to after its commit, where the queued
    rescorings are scored together and written, so it is the whole cost; divided by the batch's events
    it is that batch's CPU per event. With batch=1 every event is its own transaction, as when events
    arrive one at a time, and the percentiles are those of single events.
    """
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", source="/crm/scoring")
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        if with_models:
            await install_models(db)
        stream = events(n, 1000)
        per_batch: list[float] = []  # CPU per event of each batch
        total_cpu = 0.0
        for start in range(0, n, batch):
            chunk = stream[start : start + batch]
            batch_start = time.process_time()
            async with db.transaction() as session:
                for event in chunk:
                    await HANDLERS[event.envelope.type](session, event)
            cpu = time.process_time() - batch_start
            total_cpu += cpu
            per_batch.append(cpu / len(chunk))
        await db.dispose()
    per_batch.sort()
    return {
        "mean_ms": 1000 * total_cpu / n,
        "p50_ms": 1000 * statistics.median(per_batch),
        "p95_ms": 1000 * per_batch[int(0.95 * (len(per_batch) - 1))],
        "batches": len(per_batch),
    }


async def install_models(db: Database) -> None:
    """An active value model (CDNOW's published parameters) and a trained logistic churn model."""
    model = ValueModel(
        "value-bench",
        vm.BgNbdParams(0.243, 4.414, 0.793, 2.426),
        vm.GammaGammaParams(6.25, 3.74, 15.44),
        vm.ClvSettings(),
        (120.0, 30.0, 10.0),
    )
    rng = np.random.default_rng(0)
    snapshots = []
    labels = []
    for _ in range(400):
        snap: dict[str, Any] = {name: float(rng.gamma(2, 10)) for name in churn_model.EVENT_FEATURES}
        snap["attr.segment"] = str(rng.choice(["smb", "enterprise"]))
        snapshots.append(snap)
        labels.append(int(rng.random() < 0.3 + 0.02 * snap["complaints_30d"]))
    trained = churn_model.train(snapshots, labels)
    async with db.transaction() as session:
        session.add(
            ValueModelVersion(
                id=model.id, params=model.params_json(), n_customers=0, calibration_end=date(2026, 1, 1), active=True
            )
        )
        session.add(ChurnModelVersion(id="churn-bench", algorithm="logistic", blob=trained.dumps(), active=True))


def synthetic_population(n: int, seed: int = 7) -> dict[str, dict[date, float]]:
    """Purchase-day histories drawn from BG/NBD (r=0.5, alpha=5, a=0.8, b=2.5) and gamma spend."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.5, 1 / 5.0, n)
    drop = rng.beta(0.8, 2.5, n)
    age_weeks = rng.uniform(1, 78, n)
    end = date(2026, 1, 1)
    history: dict[str, dict[date, float]] = {}
    for i in range(n):
        first = end - timedelta(days=int(age_weeks[i] * 7))
        days = {first: float(rng.gamma(3, 15))}
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > age_weeks[i]:
                break
            days[first + timedelta(days=int(t * 7))] = float(rng.gamma(3, 15))
            if rng.random() < drop[i]:
                break
        history[f"s{i}"] = days
    return history


def refit(n: int) -> dict[str, float]:
    history = synthetic_population(n)
    start = time.perf_counter()
    model, metrics, fitted = fit_value_model(
        history, date(2026, 1, 1), model_id="bench", clv_settings=vm.ClvSettings(), tier_shares=(0.05, 0.15, 0.3)
    )
    elapsed = time.perf_counter() - start
    return {
        "customers": fitted,
        "seconds": elapsed,
        "r": model.bgnbd.r,
        "alpha": model.bgnbd.alpha,
        "a": model.bgnbd.a,
        "b": model.bgnbd.b,
        "repeat_buyers": metrics["n_repeat_buyers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in consumer-sized batches")
    parser.add_argument("--single-events", type=int, default=2000, help="events one per transaction")
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    for batch, n in ((BATCH, args.events), (1, args.single_events)):
        for with_models in (False, True):
            label = "value + trained churn model" if with_models else "rules only"
            result = asyncio.run(handler_path(n, with_models=with_models, batch=batch))
            print(
                f"handler path, {label}, {batch} event(s) per transaction: {n} events, CPU per event "
                f"mean {result['mean_ms']:.3f} ms, p50 {result['p50_ms']:.3f} ms, p95 {result['p95_ms']:.3f} ms "
                f"(over {result['batches']} transactions, each incl. its commit)"
            )
    result = refit(args.customers)
    print(
        f"refit: {result['customers']} customers ({result['repeat_buyers']} repeat buyers) "
        f"in {result['seconds']:.2f} s; "
        f"r={result['r']:.3f} alpha={result['alpha']:.3f} a={result['a']:.3f} b={result['b']:.3f} "
        "(generated with r=0.5 alpha=5 a=0.8 b=2.5)"
    )


if __name__ == "__main__":
    main()
