"""docs/domain.md lists exactly the codes the code knows: statuses, reasons, workflow, default rules and
playbooks. A new code or a changed default fails here until the reference says what it means."""

from __future__ import annotations

import re

import pytest

from servicekit.events.contracts.common import CustomerStatus, InteractionType
from servicekit.settings import REPO_ROOT
from services.customer.lifecycle import ALLOWED, REASON_FACTS, ChurnReason
from services.customer.models import CustomerKind
from services.interaction.complaints import TRANSITIONS, ComplaintCategory
from services.retention.alerts.models import AlertStatus, Outcome
from services.retention.defaults import DEFAULT_PLAYBOOKS, DEFAULT_RULES
from services.retention.playbooks.core import Action
from services.retention.rules.core import RuleKind
from services.retention.tasks.models import TaskStatus

DOC = (REPO_ROOT / "docs" / "domain.md").read_text()


def _table(heading: str) -> list[list[str]]:
    """Rows of the first table after a heading line containing `heading`, as cell lists."""
    section = DOC.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-: "):
                continue
            rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([a-z_-]+)`", cell)


@pytest.mark.parametrize(
    ("enum", "where"),
    [
        (InteractionType, "Interaction types"),
        (ComplaintCategory, "Complaint categories"),
        (AlertStatus, "Alert statuses"),
        (Outcome, "Outcomes recorded"),
        (RuleKind, "Rule kinds"),
        (Action, "Step actions"),
        (TaskStatus, "Task statuses"),
    ],
)
def test_each_code_list_names_exactly_the_codes_of_its_enumeration(enum: type, where: str) -> None:
    sentence = DOC.split(where, 1)[1].split(".", 1)[0]
    assert set(_codes(sentence)) == {member.value for member in enum}


def test_the_customer_table_names_every_status_and_kind() -> None:
    rows = {row[0]: row for row in _table("## Customers")}
    assert set(_codes(rows["customer status"][1])) == {s.value for s in CustomerStatus}
    assert set(_codes(rows["kind"][1])) == {k.value for k in CustomerKind}


def test_the_status_transitions_are_the_lifecycles() -> None:
    documented = {(row[0].strip("`"), to) for row in _table("Status transitions") for to in _codes(row[1])}
    assert documented == {(src.value, dst.value) for src, targets in ALLOWED.items() for dst in targets}


def test_the_churn_reasons_are_the_enumeration_with_their_side_and_voluntariness() -> None:
    documented = [(row[0].strip("`"), row[1], row[2]) for row in _table("### Churn reasons")]
    facts = [(r.value, REASON_FACTS[r].side.value, "yes" if REASON_FACTS[r].voluntary else "no") for r in ChurnReason]
    assert documented == facts


def test_the_complaint_workflow_is_the_transition_table() -> None:
    documented = {row[0].strip("`"): set(_codes(row[1])) for row in _table("The complaint workflow follows")}
    assert documented == {src.value: {dst.value for dst in targets} for src, targets in TRANSITIONS.items()}


def test_the_default_rules_are_the_seeded_ones() -> None:
    documented = {
        (row[0].strip("`"), row[1].strip("`")) for row in _table("The rules a new retention database starts with")
    }
    assert documented == {(rule["id"], rule["reason"]) for rule in DEFAULT_RULES}


def test_the_default_playbooks_and_their_steps_are_the_seeded_ones() -> None:
    step = re.compile(r"`([a-z_]+)` (\d+)(?: \(([a-z, ]+)\))?")
    documented = {
        row[0].strip("`"): (
            row[1].strip("`"),
            [(a, float(h), sorted(t.split(", ")) if t else []) for a, h, t in step.findall(row[2])],
        )
        for row in _table("Step actions")
    }
    seeded = {
        book["id"]: (book["reason"], [(s["action"], s["due_in_hours"], sorted(s["only_tiers"])) for s in book["steps"]])
        for book in DEFAULT_PLAYBOOKS
    }
    assert documented == seeded
