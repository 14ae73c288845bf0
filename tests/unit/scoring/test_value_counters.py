"""The value counters the feature state keeps as events arrive (no scan needed for the value reports)."""

from datetime import UTC, datetime

from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores import features
from services.scoring.scores.features import FeatureState

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _record(state: FeatureState, id: str, type: str, **kw) -> bool:
    return features.record_interaction(state, interaction_id=id, type=type, occurred_at=AT, **kw)


def test_contacts_referrals_and_their_amounts_are_counted_once():
    state = FeatureState(customer_id="c")
    _record(state, "1", "call")
    _record(state, "2", "email")
    _record(state, "3", "purchase", amount=100.0)
    _record(state, "4", "return")
    _record(state, "5", "complaint", severity="low", category="billing")
    _record(state, "6", "feedback", category="referral", amount=40.0)
    _record(state, "7", "call", category="referral")
    assert not _record(state, "6", "feedback", category="referral", amount=40.0)  # a duplicate
    _record(state, "8", "survey")  # survey.answered carries it
    assert (state.contacts, state.referrals, state.referral_amount, state.referrals_with_amount) == (2, 2, 40.0, 1)
    assert (state.purchases, state.returns, state.complaints_total) == (1, 1, 1)


def test_the_wallet_estimate_follows_the_customer_attribute():
    state = FeatureState(customer_id="c")
    features.customer_upserted(state, attributes={"wallet_estimate": 1200, "tier": "gold"}, version=1)
    assert state.wallet_estimate == 1200.0
    # an update that leaves attributes alone keeps it; one that changes them without it drops it
    features.customer_upserted(state, segment="smb", version=2, fields_changed=frozenset({"segment"}))
    assert state.wallet_estimate == 1200.0
    features.customer_upserted(state, attributes={"tier": "gold"}, version=3, fields_changed=frozenset({"attributes"}))
    assert state.wallet_estimate is None


def test_the_counters_survive_the_storage_round_trip():
    state = FeatureState(customer_id="c", contacts=3, referrals=2, referral_amount=5.5, wallet_estimate=10.0)
    again = features.load_state(features.dump_state(state))
    assert (again.contacts, again.referrals, again.referral_amount, again.wallet_estimate) == (3, 2, 5.5, 10.0)


# ---- through the handlers: counters and the tier history in the store ------------------------------------


async def _handle(database, *events) -> None:
    from services.scoring.handlers import HANDLERS

    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's batch
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def test_handlers_keep_the_counters_and_write_a_tier_change_only_when_the_tier_moves(database):
    from sqlalchemy import func, select

    from services.scoring.scores.models import CustomerFeatures, ScoreRecord, TierChange
    from tests.unit.scoring import events as ev

    await _handle(database, ev.customer_created(), ev.purchase(id="p1", days=-3), ev.interaction(id="i1", days=-2))
    await _handle(database, ev.interaction(id="i2", days=-1, type="email"), ev.complaint(id="k1", days=0))
    async with database.transaction() as session:
        row = await session.get(CustomerFeatures, "c-1")
        assert (row.purchases, row.contacts, row.complaints_total) == (1, 2, 1)
        scores = (await session.execute(select(func.count()).select_from(ScoreRecord))).scalar_one()
        changes = (await session.execute(select(TierChange.customer_id, TierChange.tier))).all()
    # five scorings (the customer's creation and four interactions), no value model: one tier change
    # (the first score, without a tier)
    assert scores == 5 and changes == [("c-1", None)]
    await _handle(database, ev.customer_erased())
    async with database.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(TierChange))).scalar_one() == 0
