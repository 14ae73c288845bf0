"""Run-time settings of the retention service: read, overridden, refused, reset, audited, and in force."""

import httpx

from servicekit import runtime_settings
from servicekit.db import Database
from services.retention.settings import RetentionSettings
from services.retention.touches import service as touches


def _item(body: dict, name: str) -> dict:
    return next(i for i in body["items"] if i["name"] == name)


async def test_a_setting_is_listed_with_its_value_default_and_source(
    app_db: tuple[httpx.AsyncClient, Database],
) -> None:
    client, _ = app_db
    body = (await client.get("/settings/retention")).json()
    assert body["service"] == "retention"
    audience = _item(body, "campaign_max_audience")
    assert audience["value"] == audience["default"] == audience["configured"] == 100_000
    assert audience["source"] == "default"
    assert audience["json_schema"]["minimum"] == 1 and audience["json_schema"]["maximum"] == 1_000_000
    assert _item(body, "contact_quiet_start")["value"] is None


async def test_an_override_outside_the_settings_bounds_is_refused_naming_the_value(
    app_db: tuple[httpx.AsyncClient, Database],
) -> None:
    client, _ = app_db
    for name, value in [
        ("campaign_max_audience", 0),
        ("campaign_max_audience", "many"),
        ("contact_quiet_start", "25:00"),
        ("contact_default_cap", {"max_touches": -1, "window_days": 7}),
        ("alert_response_sla_hours", 0),
    ]:
        answer = await client.put(f"/settings/retention/{name}", json={"value": value})
        assert answer.status_code == 422, (name, value, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in answer.json()["errors"]] == ["value"]
        assert name in answer.json()["detail"]
    assert (await client.get("/settings/retention/changes")).json()["total"] == 0
    assert _item((await client.get("/settings/retention")).json(), "campaign_max_audience")["source"] == "default"


async def test_an_unknown_or_untunable_setting_is_refused_naming_it(app_db: tuple[httpx.AsyncClient, Database]) -> None:
    client, _ = app_db
    for name in ("no_such_setting", "database_url", "survey_link_secret"):
        answer = await client.put(f"/settings/retention/{name}", json={"value": "x"})
        assert answer.status_code == 422, name
        assert [e["field"] for e in answer.json()["errors"]] == ["path.name"] or "name" in answer.text


async def test_an_override_is_in_force_at_once_audited_and_reset(app_db: tuple[httpx.AsyncClient, Database]) -> None:
    client, database = app_db
    base = RetentionSettings(database_url=str(database.engine.url))
    changed = await client.put("/settings/retention/contact_quiet_start", json={"value": "21:00"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["value"] == "21:00" and changed.json()["source"] == "override"
    await client.put("/settings/retention/contact_quiet_end", json={"value": "08:00"})
    await client.put("/settings/retention/campaign_max_audience", json={"value": 500})

    runtime_settings.forget(base)
    async with database.transaction() as session:
        in_force = await runtime_settings.current(session, base)
        policy = await touches.policy(session)
    assert in_force.campaign_max_audience == 500
    assert policy.quiet is not None and policy.quiet.start.hour == 21 and policy.quiet.end.hour == 8

    changes = (await client.get("/settings/retention/changes")).json()
    assert changes["total"] == 3
    newest = changes["items"][0]
    assert (newest["name"], newest["action"], newest["old_value"], newest["new_value"]) == (
        "campaign_max_audience",
        "set",
        100_000,
        500,
    )

    reset = await client.delete("/settings/retention/campaign_max_audience")
    assert reset.status_code == 200 and reset.json()["source"] == "default" and reset.json()["value"] == 100_000
    changes = (await client.get("/settings/retention/changes")).json()
    assert changes["total"] == 4 and changes["items"][0]["action"] == "reset"
    async with database.transaction() as session:
        # The reset went through this process: its cache was dropped, so the configured value is in force at once.
        assert (await runtime_settings.current(session, base)).campaign_max_audience == 100_000


async def test_the_change_log_is_read_only(app_db: tuple[httpx.AsyncClient, Database]) -> None:
    client, _ = app_db
    for method in ("PUT", "DELETE"):
        answer = await client.request(method, "/settings/retention/changes", json={"value": 1})
        assert answer.status_code == 405 and answer.headers["allow"] == "GET"
