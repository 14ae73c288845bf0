"""crm generate subscriptions: deterministic, importable, and carrying its documented churn mechanism."""

import csv
import hashlib
import json
from pathlib import Path

import pytest

from cli.generate import WEIGHTS, churn_logit, write
from cli.main import main


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_seed_gives_identical_files_and_another_seed_others(tmp_path: Path):
    write(tmp_path / "a", 300, seed=11)
    write(tmp_path / "b", 300, seed=11)
    write(tmp_path / "c", 300, seed=12)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["customers.csv"] != digest(tmp_path / "c")["customers.csv"]


def test_the_data_set_carries_the_mechanism_it_documents(tmp_path: Path):
    mechanism = write(tmp_path, 3000, seed=3)
    customers = {r["external_ref"]: r for r in csv.DictReader((tmp_path / "customers.csv").open())}
    churned = {r["customer_ref"] for r in csv.DictReader((tmp_path / "statuses.csv").open())}
    assert mechanism["churned"] == len(churned) and mechanism["weights"] == WEIGHTS

    def rate(contract: str) -> float:
        refs = [ref for ref, c in customers.items() if c["contract"] == contract]
        return sum(ref in churned for ref in refs) / len(refs)

    assert rate("month_to_month") > 2 * rate("two_year")
    # A churned customer's history ends by its churn day.
    last = {s["customer_ref"]: s["churned_at"] for s in csv.DictReader((tmp_path / "statuses.csv").open())}
    for row in csv.DictReader((tmp_path / "interactions.csv").open()):
        if row["customer_ref"] in last:
            assert row["occurred_at"][:10] <= last[row["customer_ref"]]


def test_the_logit_is_the_documented_formula_with_its_interactions_and_thresholds():
    early = {"plan": "basic", "contract": "month_to_month", "payment_method": "electronic_check", "tenure_months": 4,
             "monthly_charges": 34.0}  # fmt: skip
    # A month-to-month customer in its first months, paying by electronic check, after a price increase on basic.
    assert churn_logit(early, complaints=2) == pytest.approx(-2.0 + 0.5 + 1.8 + 1.2 + 1.4 - 0.06 + 1.2 - 0.26)
    # The same facts where they do not matter: a two-year contract, a premium plan's increase.
    settled = {**early, "plan": "premium", "contract": "two_year", "monthly_charges": 110.0}
    assert churn_logit(settled, complaints=2) == pytest.approx(-2.0 - 1.0 - 0.06 + 1.2 + 0.5)
    # Past its first six months a month-to-month customer loses the early term, not the electronic check one.
    assert churn_logit({**early, "tenure_months": 7, "monthly_charges": 30.0}, complaints=0) == pytest.approx(
        -2.0 + 0.5 + 1.2 - 0.105 - 0.3
    )


def test_the_generated_files_pass_a_dry_run_with_their_mappings(tmp_path: Path, capsys):
    assert main(["generate", "subscriptions", "--customers", "50", "--seed", "1", str(tmp_path)]) == 0
    for kind in ("customers", "interactions", "statuses"):
        assert main(["import", kind, str(tmp_path / f"{kind}.csv"), "--mapping", str(tmp_path / f"{kind}.yaml"),
                     "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "customers: 50 valid, 0 rejected" in out
    assert json.loads((tmp_path / "mechanism.json").read_text())["customers"] == 50


def test_padding_gives_exactly_the_asked_interactions_and_keeps_the_rest_of_the_data_set(tmp_path: Path):
    plain = write(tmp_path / "plain", 400, seed=5)
    padded = write(tmp_path / "padded", 400, seed=5, interactions=plain["interactions"] + 1234)
    rows = list(csv.DictReader((tmp_path / "padded" / "interactions.csv").open()))
    assert padded["interactions"] == len(rows) == plain["interactions"] + 1234
    assert len({r["external_id"] for r in rows}) == len(rows)
    for name in ("customers.csv", "statuses.csv"):
        assert digest(tmp_path / "plain")[name] == digest(tmp_path / "padded")[name]
    # Every generated row is still there, unchanged; the added ones are support contacts.
    original = {tuple(r.values()) for r in csv.DictReader((tmp_path / "plain" / "interactions.csv").open())}
    added = [r for r in rows if tuple(r.values()) not in original]
    assert len(added) == 1234 and {r["channel"] for r in added} == {"support"}
    # A churned customer's padded history still ends by its churn day.
    last = {s["customer_ref"]: s["churned_at"] for s in csv.DictReader((tmp_path / "padded" / "statuses.csv").open())}
    assert all(r["occurred_at"][:10] <= last[r["customer_ref"]] for r in added if r["customer_ref"] in last)


def test_padding_to_fewer_interactions_than_generated_is_refused(tmp_path: Path, capsys):
    code = main(["generate", "subscriptions", "--customers", "50", "--interactions", "10", str(tmp_path)])
    assert code == 2 and "--interactions" in capsys.readouterr().out
