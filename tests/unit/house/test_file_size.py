"""No source file of the product grows past about 400 lines (issue: "no file over about 400 lines").

The product is the library, the contracts, the runner, the services, the gateway, the CLI and the document
generators; migrations are left out (each is one revision, written once). Tests and bench scripts are not
part of the house this rule keeps.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("servicekit", "contracts", "runner", "services", "gateway", "cli", "tools")
MAX_LINES = 400


def _line_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            counts[str(path.relative_to(ROOT))] = len(path.read_text().splitlines())
    return counts


def test_no_source_file_is_over_the_limit() -> None:
    over = {name: n for name, n in sorted(_line_counts().items()) if n > MAX_LINES}
    assert over == {}, f"split these by what each part does (at most {MAX_LINES} lines): {over}"
