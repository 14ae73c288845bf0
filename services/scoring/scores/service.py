"""Customer features built from events, and their rescoring: domain functions that never commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_
from sqlmodel import select

from contracts.erasure import ErasureConfirmed
from contracts.scoring import ScoreValues
from servicekit import tracing
from servicekit.context import current_correlation_id
from servicekit.outbox import enqueue
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores import feature_rows, features, sweep, write_behind
from services.scoring.scores.features import FeatureState
from services.scoring.scores.models import (
    CurrentScore,
    CustomerFeatures,
    Purchase,
    ScoreRecord,
    TierChange,
)
from services.scoring.scores.rules import RuleWeights
from services.scoring.scores.scorer import Computed, compute_batch
from services.scoring.scores.sweep import ChangeThresholds
from services.scoring.training.service import active_models, forget_active_models

Change = Callable[[FeatureState], bool]


# ---- feature state -----------------------------------------------------------------------------------


async def apply_event(
    *,
    uow: UnitOfWork,
    customer_id: str,
    change: Change,
    event_id: str,
    event_type: str,
    at: datetime,
    weights: RuleWeights,
    rescore: bool = True,
    profile_only: bool = False,
    history: bool = False,
) -> bool:
    """Apply one event to the customer's features and, if it changed them, rescore.

    profile_only: the event changes the customer's profile, not its history (customer.*): it is
    scored as of the customer's latest event if it has one, so the order in which a profile and its
    history arrive does not change the scores; as of `at` otherwise.

    history: the event is older than the history horizon; its rescoring may be merged with the
    customer's next one in the batch (write_behind.Pending.add).

    Returns whether it rescored: False when nothing was scored (a duplicate, an erased
    customer, or an event that does not feed the scores).
    """
    row, state = await feature_rows.load(uow, customer_id)
    if state.erased or not change(state):
        return False
    feature_rows.store(uow, row, state)
    if not rescore:
        return False
    as_of = state.last_event_at if profile_only and state.last_event_at is not None else state.as_of(at)
    await rescore_customer(
        uow=uow,
        state=state,
        as_of=as_of,
        caused_by=event_id,
        caused_by_type=event_type,
        weights=weights,
        history=history,
    )
    return True


ERASURE_SUMMARY = (
    "Removed the customer's features (attributes among them), score history with its feature snapshots, "
    "tier history, current score and purchases; kept a tombstone so late events do not rebuild them."
)


async def erase_customer(*, uow: UnitOfWork, customer_id: str) -> None:
    """Forget the customer's features and score history; keep a tombstone against late events.

    The first time, confirms with erasure.confirmed in the same transaction (the tombstone makes a
    redelivery a no-op, so there is one receipt); without it the customer's erasure never completes."""
    session = uow.session
    write_behind.forget_customer(uow, customer_id)
    row, state = await feature_rows.load(uow, customer_id)
    first = features.customer_erased(state)
    if first:
        feature_rows.store(uow, row, state)
    await session.execute(delete(ScoreRecord).where(ScoreRecord.customer_id == customer_id))
    await session.execute(delete(CurrentScore).where(CurrentScore.customer_id == customer_id))
    await session.execute(delete(TierChange).where(TierChange.customer_id == customer_id))  # type: ignore[arg-type]
    await session.execute(delete(Purchase).where(Purchase.customer_id == customer_id))
    await session.flush()
    if first:
        await enqueue(
            session,
            ErasureConfirmed(
                customer_id=customer_id, service="scoring", erased_at=datetime.now(UTC), summary=ERASURE_SUMMARY
            ),
        )


# ---- scoring -----------------------------------------------------------------------------------------


async def rescore_customer(
    *,
    uow: UnitOfWork,
    state: FeatureState,
    as_of: datetime,
    caused_by: str,
    caused_by_type: str,
    weights: RuleWeights,
    computed: Computed | None = None,
    history: bool = False,
    previous_as_of: datetime | None = None,
) -> None:
    """Queue a rescoring: at commit its scores are appended to the history, the current row replaced and
    score.updated enqueued, for the whole batch at once (write_behind). `computed`: already scored."""
    write_behind.add_rescore(
        uow,
        write_behind.Rescore(
            state=state,
            as_of=as_of,
            caused_by=caused_by,
            caused_by_type=caused_by_type,
            models=await active_models(uow),
            weights=weights,
            computed_at=datetime.now(UTC),
            correlation_id=current_correlation_id(),
            computed=computed,
            trace=tracing.current_context_headers(),
            history=history,
            previous_as_of=previous_as_of,
        ),
    )


def record_purchase(
    *, uow: UnitOfWork, interaction_id: str, customer_id: str, occurred_at: datetime, amount: float
) -> None:
    """Keep the purchase for refits; a second copy of the same interaction is ignored."""
    values = {
        "interaction_id": interaction_id,
        "customer_id": customer_id,
        "day": features.utc(occurred_at).date(),
        "amount": max(amount, 0.0),
    }
    write_behind.add_purchase(uow, values)


async def rescore_all(
    *,
    uow: UnitOfWork,
    caused_by: str,
    caused_by_type: str,
    weights: RuleWeights,
    after: str = "",
    limit: int,
    now: datetime | None = None,
) -> tuple[str | None, int]:
    """Rescore up to `limit` customers with id > after (a model changed): (last id or None, how many).

    Each is scored as of `now` (the population's data clock: the latest event time held), never
    earlier than its own last event, so a customer who went quiet ages like everyone else."""
    forget_active_models(uow)
    rows = (
        (
            await uow.session.execute(
                select(CustomerFeatures)
                .where(CustomerFeatures.customer_id > after, CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
                .order_by(CustomerFeatures.customer_id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    for row in rows:
        state = features.load_state({name: getattr(row, name) for name in features.STATE_FIELDS})
        # A customer known only by its profile (no events yet) is scored too, as of the data clock.
        last = state.last_event_at or now or datetime.now(UTC)
        await rescore_customer(
            uow=uow,
            state=state,
            as_of=max(last, now) if now is not None else last,
            caused_by=caused_by,
            caused_by_type=caused_by_type,
            weights=weights,
        )
    return (rows[-1].customer_id if rows else None), len(rows)


SWEEP_CAUSE = "scoring.sweep"  # caused_by_type of a score the silent-customer sweep published


async def rescore_silent(
    *,
    uow: UnitOfWork,
    clock: datetime,
    min_age: timedelta,
    thresholds: ChangeThresholds,
    weights: RuleWeights,
    after: str = "",
    limit: int,
) -> tuple[str | None, int, int]:
    """One batch of the silent-customer sweep, over customers with id > after.

    Each customer due (sweep.sweep_as_of) is scored at the clock; if a score moved enough against the
    last one published (sweep.meaningful_change) it is written and published like any rescoring, with
    lineage "sweep:<clock>". Every customer looked at is marked swept at that time, so the next pass
    skips it until it is due again: a pass repeated at the same clock changes nothing.
    Returns (last id read, or None when none is left; customers scored; scores published).

    The features rows are locked (PostgreSQL; SKIP LOCKED), so a customer whose event is being handled
    is left for the next pass rather than scored from features that event is changing.
    """
    cutoff = clock - min_age
    current = CurrentScore
    query = (
        select(
            CustomerFeatures,
            current.as_of,
            current.churn_risk,
            current.health,
            current.value_tier,
            current.lifecycle_stage,
            current.p_alive,
            current.clv,
            current.expected_purchases,
        )
        .outerjoin(current, current.customer_id == CustomerFeatures.customer_id)
        .where(CustomerFeatures.customer_id > after, CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
        .where(CustomerFeatures.last_event_at.is_not(None))  # type: ignore[union-attr]
        .where(or_(CustomerFeatures.status.is_(None), CustomerFeatures.status != "churned"))  # type: ignore[union-attr]
        # A pre-filter for sweep_as_of, which decides: nothing looked at since the cutoff.
        .where(or_(current.as_of.is_(None), current.as_of <= cutoff))  # type: ignore[union-attr]
        .where(or_(CustomerFeatures.swept_at.is_(None), CustomerFeatures.swept_at <= cutoff))  # type: ignore[union-attr]
        .order_by(CustomerFeatures.customer_id)
        .limit(limit)
        .with_for_update(of=CustomerFeatures, skip_locked=True)  # type: ignore[arg-type]
    )
    rows = (await uow.session.execute(query)).all()
    due: list[tuple[CustomerFeatures, FeatureState, datetime, ScoreValues | None, datetime | None]] = []
    for row in rows:
        features_row = row[0]
        state = features.load_state({name: getattr(features_row, name) for name in features.STATE_FIELDS})
        looked = [features.utc(t) for t in (row.as_of, features_row.swept_at) if t is not None]
        as_of = sweep.sweep_as_of(
            status=state.status,
            last_event_at=state.last_event_at,
            looked_at=max(looked, default=None),
            clock=clock,
            min_age=min_age,
        )
        if as_of is None:
            continue
        previous = None
        if row.churn_risk is not None:
            previous = ScoreValues(
                churn_risk=row.churn_risk,
                health=row.health,
                value_tier=row.value_tier,
                lifecycle_stage=row.lifecycle_stage,
                p_alive=row.p_alive,
                clv=row.clv,
                expected_purchases=row.expected_purchases,
            )
        due.append((features_row, state, as_of, previous, max(looked, default=None)))
    models = await active_models(uow)
    computed = compute_batch([(state, as_of) for _, state, as_of, _, _ in due], models, weights)
    published = 0
    for (features_row, state, as_of, previous, looked_at), scores in zip(due, computed, strict=True):
        features_row.swept_at = as_of
        if sweep.meaningful_change(previous, scores.values(), thresholds):
            await rescore_customer(
                uow=uow,
                state=state,
                as_of=as_of,
                caused_by=f"sweep:{clock.isoformat()}",
                caused_by_type=SWEEP_CAUSE,
                weights=weights,
                computed=scores,
                previous_as_of=looked_at,  # a lapse it reports crossed since then (retention's rules)
            )
            published += 1
    return (rows[-1][0].customer_id if rows else None), len(due), published
