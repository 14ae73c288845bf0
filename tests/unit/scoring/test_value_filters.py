"""The value reports filtered by owner and team, and the segment builder's owner, team and consent fields, on
test_value_reports.py's data set (its module docstring has the figures) with these owners, teams and consent:

  id  owner  team   consent
  c1  ann    north  email opt_in, sms opt_out
  c2  ann    south  email opt_out
  c3  bob    north  -
  c4  bob    -      email opt_in
  c5  -      north  -
  c6  ann    north  email opt_in   (no purchase: outside the value reports' population)
"""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from contracts.common import ConsentSource, ConsentStatus, ContactChannel, LegalBasis
from contracts.customer import ChannelConsent, ConsentChanged, CustomerUpdated
from services.scoring.scores import features
from services.scoring.scores.handlers import FEEDS
from services.scoring.scores.models import CustomerFeatures
from tests.unit.scoring.test_value_reports import client  # noqa: F401  (the fixture)

PROFILE: dict[str, tuple[str | None, str | None, dict[str, str]]] = {
    "c1": ("ann", "north", {"email": "opt_in", "sms": "opt_out"}),
    "c2": ("ann", "south", {"email": "opt_out"}),
    "c3": ("bob", "north", {}),
    "c4": ("bob", None, {"email": "opt_in"}),
    "c5": (None, "north", {}),
    "c6": ("ann", "north", {"email": "opt_in"}),
}


@pytest.fixture
async def profiled(client: httpx.AsyncClient) -> httpx.AsyncClient:  # noqa: F811
    database = client.app.state.database  # type: ignore[attr-defined]
    async with database.transaction() as session:
        for cid, (owner, team, consent) in PROFILE.items():
            attributes = {"team": team} if team else {}
            await session.execute(
                update(CustomerFeatures)
                .where(CustomerFeatures.customer_id == cid)  # type: ignore[arg-type]
                .values(owner=owner, attributes=attributes, consent=consent)
            )
    return client


async def _summary(api: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await api.get(f"/reports/value/summary?{query}")
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()["items"][0]
    return item


async def test_value_summary_by_owner_and_team(profiled: httpx.AsyncClient) -> None:
    ann = await _summary(profiled, "owner=ann")  # c1, c2 (c6 never bought)
    assert (ann["customers"], ann["revenue"], ann["contribution"]) == (2, 1500.0, 1430.0)
    north = await _summary(profiled, "team=north")  # c1, c3, c5: 980 + 170 - 30
    assert (north["customers"], north["revenue"], north["contribution"]) == (3, 1250.0, 1120.0)
    both = await _summary(profiled, "owner=bob&team=north")  # c3
    assert (both["customers"], both["revenue"]) == (1, 200.0)
    either = await _summary(profiled, "owner=bob&owner=ann")  # c1 to c4
    assert (either["customers"], either["revenue"]) == (4, 1800.0)


async def test_pyramid_concentration_migration_and_rfm_by_owner_and_team(profiled: httpx.AsyncClient) -> None:
    bob = (await profiled.get("/reports/value/pyramid?owner=bob")).json()  # c3 and c4: iron, CLV 100 + 300
    assert (bob["customers"], bob["value"]) == (2, 400.0)
    assert {i["tier"]: i["customers"] for i in bob["items"] if i["customers"]} == {"iron": 2}
    ann = (await profiled.get("/reports/value/concentration?basis=contribution&owner=ann&top=0.5")).json()
    assert (ann["customers"], ann["value"], ann["top_share"]) == (2, 1430.0, pytest.approx(980 / 1430))
    moves = (await profiled.get("/reports/value/tier-migration?from=2025-01-01&to=2025-07-01&owner=ann")).json()
    cells = {(i["from_tier"], i["to_tier"]): i["customers"] for i in moves["items"]}
    assert cells == {("gold", "platinum"): 1, ("gold", "gold"): 1, ("none", "none"): 1}  # c1, c2, c6
    rfm = (await profiled.get("/reports/value/rfm?team=north")).json()
    assert rfm["customers"] == 3  # c1, c3, c5


@pytest.mark.parametrize(
    ("query", "field"),
    [("owner=", "query.owner[0]"), (f"team=north&team={'x' * 101}", "query.team[1]")],
)
async def test_bad_owner_or_team_is_a_422_naming_it(profiled: httpx.AsyncClient, query: str, field: str) -> None:
    response = await profiled.get(f"/reports/value/summary?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]


async def _members(api: httpx.AsyncClient, conditions: list[dict[str, Any]]) -> list[str]:
    created = await api.post("/segments", json={"name": "s", "filter": conditions})
    assert created.status_code == 201, created.text
    listed = (await api.get(f"/segments/{created.json()['id']}/customers")).json()
    return [i["customer_id"] for i in listed["items"]]


async def test_segments_on_owner_team_and_consent(profiled: httpx.AsyncClient) -> None:
    assert await _members(profiled, [{"field": "owner", "op": "eq", "value": "ann"}]) == ["c1", "c2", "c6"]
    assert await _members(profiled, [{"field": "team", "op": "in", "value": ["south", "west"]}]) == ["c2"]
    email = [{"field": "consent_email", "op": "eq", "value": "opt_in"}]
    assert await _members(profiled, email) == ["c1", "c4", "c6"]
    # "ne opt_in": a recorded opt-out; a channel never recorded matches no condition
    assert await _members(profiled, [{"field": "consent_email", "op": "ne", "value": "opt_in"}]) == ["c2"]
    assert await _members(profiled, [*email, {"field": "owner", "op": "eq", "value": "bob"}]) == ["c4"]


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"field": "consent_email", "op": "eq", "value": "maybe"}, "body.filter[0].value"),
        ({"field": "consent_fax", "op": "eq", "value": "opt_in"}, "body.filter[0].field"),
        ({"field": "owner", "op": "gt", "value": "ann"}, "body.filter[0].op"),
    ],
)
async def test_bad_consent_or_owner_conditions_are_a_422_naming_the_part(
    profiled: httpx.AsyncClient, condition: dict[str, Any], field: str
) -> None:
    response = await profiled.post("/segments", json={"name": "s", "filter": [condition]})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


# ---- the events that keep owner and consent ----------------------------------------------------------------


def _consent(version: int, **channels: ConsentStatus) -> ConsentChanged:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    return ConsentChanged(
        customer_id="c1",
        version=version,
        channels={
            ContactChannel(name): ChannelConsent(
                status=status, legal_basis=LegalBasis.consent, source=ConsentSource.web_form, at=at
            )
            for name, status in channels.items()
        },
        changed_at=at,
    )


def test_consent_changed_keeps_the_latest_version_of_every_channel() -> None:
    state = features.FeatureState(customer_id="c1")
    apply = FEEDS[ConsentChanged.event_type]
    assert apply.rescore(_consent(1)) is False  # consent changes no score
    assert apply.change(_consent(2, email=ConsentStatus.opt_in, sms=ConsentStatus.opt_out))(state)
    assert (state.consent, state.consent_version) == ({"email": "opt_in", "sms": "opt_out"}, 2)
    assert not apply.change(_consent(1, email=ConsentStatus.opt_out))(state)  # older: ignored
    assert apply.change(_consent(3, email=ConsentStatus.opt_out))(state)  # the whole state: sms gone
    assert state.consent == {"email": "opt_out"}
    assert features.load_state(features.dump_state(state)).consent == {"email": "opt_out"}
    features.customer_erased(state)
    assert (state.consent, state.owner) == ({}, None)


def test_every_customer_update_carries_the_current_owner() -> None:
    state = features.FeatureState(customer_id="c1")
    update_feed = FEEDS[CustomerUpdated.event_type]
    named = CustomerUpdated(customer_id="c1", version=2, owner="ann", changed=["owner"])
    assert update_feed.change(named)(state) and state.owner == "ann"
    renamed = CustomerUpdated(customer_id="c1", version=3, owner="ann", changed=["display_name"])
    assert update_feed.change(renamed)(state) and state.owner == "ann"
    unset = CustomerUpdated(customer_id="c1", version=4, owner=None, changed=["owner"])
    assert update_feed.change(unset)(state) and state.owner is None
