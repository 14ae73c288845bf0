"""The value tiers are spelled out in one place, contracts.customer.VALUE_TIERS: the scoring service that
assigns them and every service that validates or groups by them read that tuple, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("servicekit", "contracts", "runner", "services", "gateway", "cli", "tools")
SOURCE = Path("contracts/customer.py")
# The four names in order, quoted, as a tuple, list or Literal would spell them.
SPELLED = re.compile(r"""["']platinum["']\s*,\s*["']gold["']\s*,\s*["']iron["']\s*,\s*["']lead["']""")


def test_the_value_tiers_are_spelled_out_only_in_the_contract() -> None:
    spelled = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts and SPELLED.search(path.read_text()):
                spelled.append(str(path.relative_to(ROOT)))
    assert spelled == [str(SOURCE)], "read contracts.customer.VALUE_TIERS instead of spelling the tiers out"
