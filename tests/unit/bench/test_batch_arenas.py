import functools
import sys
import types
from typing import Any

import pytest

from bench.batch_arenas import module_containers, records_forever, take


def test_module_containers_counts_module_level_dicts_and_caches_of_platform_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("servicekit._arenas_probe")
    module.seen = {"a": 1, "b": 2}  # type: ignore[attr-defined]

    @functools.lru_cache(maxsize=8)
    def square(x: int) -> int:
        return x * x

    module.square = square  # type: ignore[attr-defined]
    square(2), square(3), square(3)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    other = types.ModuleType("elsewhere._arenas_probe")
    other.seen = {"x": 1}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, other.__name__, other)

    sizes = module_containers()

    assert sizes["servicekit._arenas_probe.seen"] == 2
    assert sizes["servicekit._arenas_probe.square()"] == 2
    assert not any(name.startswith("elsewhere.") for name in sizes)


def test_records_are_made_one_at_a_time_with_increasing_offsets() -> None:
    source = records_forever()
    first, second = take(source, 5), take(source, 3)
    assert [r.offset for r in first + second] == list(range(8))
    assert all(r.value for r in first + second)


def test_with_stable_tiers_each_customer_s_scores_keep_one_value_tier() -> None:
    from servicekit.events.envelope import CloudEvent

    tiers: dict[str, set[str]] = {}
    for record in take(records_forever(customers=5, stable_tiers=True), 300):
        envelope = CloudEvent.from_json(record.value or b"")
        if envelope.type == "score.updated":
            data = envelope.data or {}
            tiers.setdefault(data["customer_id"], set()).add(data["current"]["value_tier"])
    assert len(tiers) == 5 and all(len(seen) == 1 for seen in tiers.values())
    assert len(set.union(*tiers.values())) > 1  # customers differ


def test_alerts_held_counts_unresolved_alerts_in_the_session_and_the_event_ids_of_their_lineage() -> None:
    from datetime import UTC, datetime

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from bench.batch_arenas import alerts_held
    from services.retention.alerts.models import Alert

    engine = create_engine("sqlite://")
    Alert.__table__.create(engine)  # type: ignore[attr-defined]
    at = datetime(2026, 12, 8, tzinfo=UTC)
    common: dict[str, Any] = {"reason": "r", "severity": "high", "first_triggered_at": at, "last_triggered_at": at}
    with Session(engine) as session:
        # Held here as the batch's UnresolvedAlerts hold them (the identity map keeps weak references).
        rows = [
            Alert(id="a1", customer_id="c1", event_ids=["e1", "e2"], open_slot="c1:r", **common),
            Alert(id="a2", customer_id="c2", event_ids=["e3"], open_slot="c2:r", **common),
            Alert(id="a3", customer_id="c3", event_ids=["e4", "e5", "e6"], open_slot=None, **common),  # resolved
        ]
        session.add_all(rows)
        session.flush()  # persistent now: in the identity map, as the batch's loaded rows are
        assert alerts_held(session) == (2, 3)


def test_history_bytes_sums_the_history_columns_of_every_row_and_names_the_largest_row() -> None:
    from bench.batch_arenas import HISTORY_COLUMNS, history_bytes

    def row(seen: list[str]) -> dict[str, Any]:
        empty: dict[str, Any] = {c: [] for c in HISTORY_COLUMNS} | {"open_complaint_ids": {}}
        return empty | {"seen_ids": seen, "attributes": {"ignored": "x" * 500}}

    small, large = row(["a"]), row(["a", "bbbb"])
    # Per row: [] x3 and {} are 8 bytes; ["a"] 5; ["a", "bbbb"] 13. Other columns are not counted.
    assert history_bytes([small, large]) == (8 + 5 + 8 + 13, 8 + 13)
    assert history_bytes([]) == (0, 0)


def test_shortened_history_keeps_marks_and_keys_only_as_long_as_the_experiment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    from bench.batch_arenas import shorten_history
    from services.scoring.scores.features import FeatureState, events

    for name in ("PURCHASE_WINDOW", "COMPLAINT_WINDOW", "SEEN_IDS_KEPT"):
        monkeypatch.setattr(events, name, getattr(events, name))  # restored after the test
    shorten_history(1.0, 2)
    state, start = FeatureState(customer_id="c1"), datetime(2026, 12, 8, tzinfo=UTC)
    for i in range(3):
        events.record_interaction(
            state, interaction_id=f"i{i}", type="purchase", occurred_at=start + timedelta(seconds=10 * i), amount=5.0
        )
    assert [p.at for p in state.recent_purchases] == [start + timedelta(seconds=20)]
    assert state.seen_ids == ["interaction:i1", "interaction:i2"]
    assert state.purchases == 3  # the counters are whole: only what is kept for windows is shortened
