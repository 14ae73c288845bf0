"""HTTP routes of alert rules: CRUD, enable and disable, and previews against the stored history."""

from dataclasses import asdict

from fastapi import APIRouter, Response, status

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.retention.catalog.service import params_of, rule_of
from services.retention.rules import service as rules
from services.retention.rules.core import Rule, RuleKind
from services.retention.rules.models import (
    PreviewCustomer,
    PreviewPublic,
    PreviewWindow,
    RuleCreate,
    RulePreview,
    RulePublic,
    RulesPublic,
    RuleUpdate,
)

router = APIRouter()


@router.get("/rules", response_model=RulesPublic, tags=["rules"])
async def list_rules(
    session: SessionDep,
    enabled: bool | None = None,
    kind: RuleKind | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> RulesPublic:
    rows, total = await rules.list_rules(session=session, enabled=enabled, kind=kind, limit=limit, offset=offset)
    items = [RulePublic.model_validate(r, from_attributes=True) for r in rows]
    return RulesPublic(items=items, total=total, limit=limit, offset=offset)


@router.post("/rules", response_model=RulePublic, status_code=status.HTTP_201_CREATED, tags=["rules"])
async def create_rule(data: RuleCreate, session: SessionDep) -> RulePublic:
    rule = await rules.create_rule(session=session, data=data)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


def _preview_public(rule: Rule, rule_id: str | None, window: PreviewWindow, result: object) -> PreviewPublic:
    return PreviewPublic(
        rule_id=rule_id,
        reason=rule.reason_code,
        from_=window.from_,
        to=window.to,
        alerts=result.alerts,  # type: ignore[attr-defined]
        triggers=result.triggers,  # type: ignore[attr-defined]
        customers=[PreviewCustomer.model_validate(asdict(h)) for h in result.customers],  # type: ignore[attr-defined]
    )


@router.post("/rules/preview", response_model=PreviewPublic, response_model_by_alias=True, tags=["rules"])
async def preview_unsaved_rule(data: RulePreview, session: SessionDep) -> PreviewPublic:
    """What an unsaved rule would have raised over [from, to) of the stored history. Notifies nobody."""
    params = rules.check_rule(data.rule.kind, data.rule.params)
    rule = Rule(
        kind=data.rule.kind,
        severity=data.rule.severity,
        reason=data.rule.reason or "",
        params=params_of(params),
    )
    result = await rules.preview_rule(session=session, rule=rule, start=data.from_, end=data.to)
    return _preview_public(rule, None, data, result)


@router.get("/rules/{rule_id}", response_model=RulePublic, tags=["rules"])
async def get_rule(rule_id: str, session: SessionDep) -> RulePublic:
    return RulePublic.model_validate(await rules.get_rule(session=session, rule_id=rule_id), from_attributes=True)


@router.patch("/rules/{rule_id}", response_model=RulePublic, tags=["rules"])
async def update_rule(rule_id: str, data: RuleUpdate, session: SessionDep) -> RulePublic:
    rule = await rules.update_rule(session=session, rule_id=rule_id, data=data)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["rules"])
async def delete_rule(rule_id: str, session: SessionDep) -> Response:
    await rules.delete_rule(session=session, rule_id=rule_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/rules/{rule_id}/enable", response_model=RulePublic, tags=["rules"])
async def enable_rule(rule_id: str, session: SessionDep) -> RulePublic:
    rule = await rules.set_rule_enabled(session=session, rule_id=rule_id, enabled=True)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


@router.post("/rules/{rule_id}/disable", response_model=RulePublic, tags=["rules"])
async def disable_rule(rule_id: str, session: SessionDep) -> RulePublic:
    rule = await rules.set_rule_enabled(session=session, rule_id=rule_id, enabled=False)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


@router.post("/rules/{rule_id}/preview", response_model=PreviewPublic, response_model_by_alias=True, tags=["rules"])
async def preview_rule(rule_id: str, data: PreviewWindow, session: SessionDep) -> PreviewPublic:
    """What this rule (enabled or not) would have raised over [from, to). Writes nothing, notifies nobody."""
    stored = await rules.get_rule(session=session, rule_id=rule_id)
    rule = rule_of(stored)
    result = await rules.preview_rule(session=session, rule=rule, start=data.from_, end=data.to)
    return _preview_public(rule, stored.id, data, result)
