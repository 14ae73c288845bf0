"""docs/domain.md's tables, from the code: ``python -m tools.domain_doc [--write docs/domain.md]``.

Each table sits between ``<!-- domain:NAME -->`` and ``<!-- /domain:NAME -->`` in docs/domain.md; the prose
around them is written by hand. ``--write`` refreshes the tables (``make docs`` runs it); without it the
refreshed document is printed. A unit test fails while the committed file differs from what this gives.

Where the values come from:

- codes a caller sends or reads (statuses, kinds, categories, rule kinds, actions, loyalty types...): the
  public API document, console/openapi.json (itself checked against the services' code by a unit test);
- transitions, churn-reason facts, the complaint SLA clock, tiers, lifecycle stages, default rules and
  playbooks, metric names: the pure domain modules and settings that define them;
- the reports: every report route of the API document, with the first paragraph of its description.

The English meaning and the source's Chinese term of each code are the tables below: a code the code knows
and these tables do not (or the reverse) stops the generation, so a new code cannot go undocumented.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from services.customer.status.lifecycle import ALLOWED, REASON_FACTS, ChurnReason
from services.interaction.complaints.sla import SLA_RUNNING
from services.interaction.complaints.workflow import TRANSITIONS
from services.retention.defaults import DEFAULT_PLAYBOOKS, DEFAULT_RULES
from services.retention.outcomes.core import Metrics
from services.scoring.scores.summary import STAGES, TIERS
from services.scoring.settings import ScoringSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC = REPO_ROOT / "docs" / "domain.md"
API_DOCUMENT = REPO_ROOT / "console" / "openapi.json"
BLOCK = re.compile(r"(<!-- domain:(?P<name>[a-z-]+) -->\n).*?(<!-- /domain:(?P=name) -->)", re.DOTALL)
API_PREFIX = "/api/v1"
# Routes that report on many customers besides those under /reports/.
OTHER_REPORTS = ("/retention/metrics", "/scores/summary")

# ---- meanings and the source's terms (shared/CRM-GLOSSARY.md); "" where the source has no term ----------

STATUS = {
    "prospect": ("not yet a customer; cannot churn", "潜在客户"),
    "active": ("a customer", "活跃客户"),
    "churned": ("lost; needs the day and a reason code", "流失客户"),
    "won_back": ("came back after a churn; behaves like active and may churn again", "挽回客户"),
}
KIND = {"person": ("a consumer", "个人"), "company": ("a business or institution", "企业")}
TIER = {
    "platinum": ("key customers, served with dedicated resources", "白金客户"),
    "gold": ("key customers too", "黄金客户"),
    "iron": ("ordinary customers who can move up", "铁客户"),
    "lead": ("small customers, served at lower cost", "铅客户"),
}
STAGE = {
    "exploration": ("trial orders: new, or few purchase days", "考察期"),
    "formation": ("trust grows, transactions increase", "形成期"),
    "stability": ("the highest level: large, regular volumes", "稳定期"),
    "decline": ("transactions fall", "退化期"),
}
REASON = {
    "product_quality": ("the product did not meet expectations", "产品质量"),
    "poor_service": ("poor service", "服务质量差"),
    "staff_turnover": ("the account manager left and took the customer along", "员工跳槽"),
    "lack_of_innovation": ("the offer stood still while the customer's market moved on", "缺乏创新"),
    "deliberately_dropped": ("the company chose to stop serving the customer", "企业主动放弃"),
    "price": ("the company's pricing or terms", ""),
    "competitor": ("attracted by a competitor", "竞争对手吸引"),
    "changed_needs": ("the customer's needs changed", "需求变化"),
    "bad_faith_departure": ("left in bad faith, e.g. owing money or breaking the contract", "恶意离开"),
    "relocation": ("an objective cause: the customer moved away", "客观原因"),
    "closure": ("an objective cause: the business closed, or the person died", "客观原因"),
    "other": ("none of the above; say what in the note", ""),
}
COMPLAINT_STATE = {
    "open": "recorded, nobody has answered yet",
    "acknowledged": "someone listened and recorded the key points",
    "valid": "judged valid: a solution is owed",
    "rejected": "judged not valid (the reason is in the note)",
    "resolved": "a workable solution was carried out (`resolution` text)",
    "followed_up": "the customer was asked whether it worked",
    "closed": "done",
}
LOYALTY = {
    "true": "buys again and again and recommends: high behaviour, high attitude",
    "latent": "likes the company but buys little: low behaviour, high attitude",
    "spurious": "buys out of habit without preference (the source's inertia loyalty): high behaviour, low attitude",
    "none": "neither buys nor prefers: low behaviour, low attitude",
    "unmeasured": "never answered an NPS or CSAT survey: attitude unknown",
}
# (the API document's enumeration, what it lists, 中文)
CODE_LISTS: dict[str, list[tuple[str, str, str]]] = {
    "interaction-codes": [
        ("InteractionType", "interaction type (`type` of `POST /interactions`)", "客户互动"),
        ("Initiator", "who initiated it (`initiated_by`)", ""),
        ("Severity", "complaint severity (sets the SLA)", ""),
        ("ComplaintCategory", "complaint category", "投诉"),
        ("ComplaintStatus", "complaint state (the workflow below)", "投诉"),
        ("SurveyKind", "survey (`survey`: NPS answers 0-10, CSAT 1-5)", "客户满意度"),
    ],
    "alert-codes": [
        ("RuleKind", "rule kind: what a rule can watch", "流失预警"),
        ("AlertStatus", "alert status", ""),
        ("Outcome", "outcome recorded when an alert is resolved", ""),
        ("Action", "playbook step action", "挽回（客户）"),
        ("TaskStatus", "task status (`cancelled`: its alert closed as churned, the win-back playbook takes over)", ""),
    ],
}
METRIC = {
    "key": "the group (tier, segment or rule id) with `group_by`; none for the whole population",
    "customers": "the population: customers known before `to` who were not churned at `from`",
    "churned": "customers of the population whose status became `churned` within the period",
    "churn_rate": "客户流失率: churned / customers",
    "retention_rate": "客户保持率: 1 - churn rate",
    "alerted_customers": "customers with an alert first triggered within the period",
    "positive_customers": "alerted customers who then churned (after the alert) or whose alert was resolved `saved`",
    "saved_customers": "alerted customers whose alert was resolved `saved` and who did not churn after it",
    "save_rate": "saved / (saved + churned after the alert), among alerted customers",
    "precision": "positive / alerted: the alerts that found someone who really needed saving",
    "churned_with_warning": (
        "churned customers who had an alert first triggered before they churned (within the look-back)"
    ),
    "recall": "churned with warning / churned",
    "median_warning_days": "the median of churn time - the earliest such alert's first trigger, in days",
    "treated": "the period's alerts that ran their playbook: alerts, those whose customer churned after, churn rate",
    "control": "the period's alerts held back by the playbook's `control_share`: the same counts",
    "uplift": "control churn rate - treated churn rate: churn prevented per alert",
}


# ---- rendering ---------------------------------------------------------------------------------------------


def _api() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(API_DOCUMENT.read_text(encoding="utf-8"))
    return document


def _enum(api: Mapping[str, Any], name: str) -> list[str]:
    return [str(value) for value in api["components"]["schemas"][name]["enum"]]


def _covered(what: str, codes: Iterable[str], meanings: Mapping[str, Any]) -> None:
    """Every code has a meaning and every meaning a code, or the generation stops naming the difference."""
    codes = list(codes)
    missing, stale = [c for c in codes if c not in meanings], [m for m in meanings if m not in codes]
    if missing or stale:
        raise SystemExit(f"tools/domain_doc.py, {what}: no meaning for {missing}; no longer in the code: {stale}")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _codes(values: Iterable[str]) -> str:
    return ", ".join(f"`{value}`" for value in values) or "—"


def _tier_share(index: int, shares: tuple[float, ...]) -> str:
    if index >= len(shares):
        return "the rest"
    return f"{'the top' if index == 0 else 'the next'} {shares[index]:.0%}"


def customers(api: Mapping[str, Any]) -> str:
    shares = ScoringSettings.model_fields["tier_shares"].default
    rows: list[list[str]] = []
    for what, codes, meanings, prefix in (
        ("customer status", _enum(api, "CustomerStatus"), STATUS, ""),
        ("kind", _enum(api, "CustomerKind"), KIND, ""),
        ("value tier (customer pyramid)", list(TIERS), TIER, "客户金字塔"),
        ("lifecycle stage", list(STAGES), STAGE, "客户生命周期"),
    ):
        _covered(what, codes, meanings)
        for index, code in enumerate(codes):
            meaning, term = meanings[code]
            if what.startswith("value tier"):
                meaning = f"{_tier_share(index, shares)} of customers by value; {meaning}"
            rows.append([what if index == 0 else "", f"`{code}`", meaning, term or "—"])
        if prefix:
            rows[-len(codes)][3] = f"{prefix}：{rows[-len(codes)][3]}"
    return _table(["concept", "value", "meaning", "中文"], rows)


def status_transitions(api: Mapping[str, Any]) -> str:
    return _table(
        ["from", "to"], [[f"`{src.value}`", _codes(sorted(d.value for d in dst))] for src, dst in ALLOWED.items()]
    )


def churn_reasons(api: Mapping[str, Any]) -> str:
    codes = _enum(api, "ChurnReason")
    _covered("churn reasons", codes, REASON)
    if codes != [reason.value for reason in ChurnReason]:
        raise SystemExit(
            "tools/domain_doc.py: the API's churn reasons differ from services.customer.status.lifecycle's"
        )
    rows = []
    for code in codes:
        facts = REASON_FACTS[ChurnReason(code)]
        meaning, term = REASON[code]
        rows.append([f"`{code}`", facts.side.value, "yes" if facts.voluntary else "no", meaning, term or "—"])
    return _table(["code", "side", "voluntary", "meaning", "中文"], rows)


def code_lists(name: str) -> Callable[[Mapping[str, Any]], str]:
    def render(api: Mapping[str, Any]) -> str:
        rows = [[what, _codes(_enum(api, enum)), term or "—"] for enum, what, term in CODE_LISTS[name]]
        return _table(["list", "codes", "中文"], rows)

    return render


def complaint_workflow(api: Mapping[str, Any]) -> str:
    states = _enum(api, "ComplaintStatus")
    _covered("complaint states", states, COMPLAINT_STATE)
    nexts = {src.value: sorted(dst.value for dst in targets) for src, targets in TRANSITIONS.items()}
    running = {state.value for state in SLA_RUNNING}
    return _table(
        ["state", "next states", "SLA clock", "meaning"],
        [[f"`{s}`", _codes(nexts[s]), "runs" if s in running else "stopped", COMPLAINT_STATE[s]] for s in states],
    )


def default_rules(api: Mapping[str, Any]) -> str:
    return _table(
        ["rule id", "kind", "reason code", "severity", "fires when"],
        [[f"`{r['id']}`", f"`{r['kind']}`", f"`{r['reason']}`", r["severity"], r["name"]] for r in DEFAULT_RULES],
    )


def _hours(value: float) -> str:
    return f"{value:g}"


def default_playbooks(api: Mapping[str, Any]) -> str:
    rows = []
    for book in DEFAULT_PLAYBOOKS:
        steps = ", ".join(
            f"`{s['action']}` {_hours(s['due_in_hours'])}"
            + (f" ({', '.join(s['only_tiers'])})" if s["only_tiers"] else "")
            for s in book["steps"]
        )
        rows.append([f"`{book['id']}`", f"`{book['reason']}`", book["name"], steps])
    return _table(["playbook id", "reason", "name", "steps (due after, in hours; only these tiers)"], rows)


def loyalty_types(api: Mapping[str, Any]) -> str:
    codes = _enum(api, "LoyaltyType")
    _covered("loyalty types", codes, LOYALTY)
    return _table(["type", "meaning"], [[f"`{code}`", LOYALTY[code]] for code in codes])


def metrics(api: Mapping[str, Any]) -> str:
    names = [f.name for f in dataclasses.fields(Metrics)]
    _covered("retention metrics", names, METRIC)
    return _table(["measure", "definition"], [[f"`{name}`", METRIC[name]] for name in names])


def _first_paragraph(text: str) -> str:
    paragraph = " ".join(line.strip() for line in text.strip().split("\n\n", 1)[0].splitlines())
    return paragraph.replace("``", "`").replace("|", "\\|")


def reports(api: Mapping[str, Any]) -> str:
    rows = []
    for path, operations in api["paths"].items():
        route = path.removeprefix(API_PREFIX)
        if "get" in operations and (route.startswith("/reports/") or route in OTHER_REPORTS):
            operation = operations["get"]
            rows.append([f"`GET {route}`", _first_paragraph(operation.get("description") or operation["summary"])])
    return _table(["report", "what it measures"], sorted(rows))


BLOCKS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "customers": customers,
    "status-transitions": status_transitions,
    "churn-reasons": churn_reasons,
    "interaction-codes": code_lists("interaction-codes"),
    "complaint-workflow": complaint_workflow,
    "alert-codes": code_lists("alert-codes"),
    "default-rules": default_rules,
    "default-playbooks": default_playbooks,
    "loyalty-types": loyalty_types,
    "metrics": metrics,
    "reports": reports,
}


def render(document: str) -> str:
    """The document with every generated table refreshed; every block must be present exactly once."""
    api = _api()
    found = [match.group("name") for match in BLOCK.finditer(document)]
    if sorted(found) != sorted(BLOCKS):
        raise SystemExit(f"{DOC.name}: generated blocks {sorted(found)}, expected {sorted(BLOCKS)}")
    return BLOCK.sub(lambda m: m.group(1) + BLOCKS[m.group("name")](api) + m.group(3), document)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, metavar="FILE", help="refresh the tables in FILE (docs/domain.md)")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(render(args.write.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(render(DOC.read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
