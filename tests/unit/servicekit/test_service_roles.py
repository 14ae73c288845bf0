"""Which of a service's code each role imports: a relay runs none of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servicekit.service import API, CONSUME, RELAY

SERVICES = ("customer", "interaction", "scoring", "retention")

# Prints the modules a process of the given roles imported, after building its app.
PROBE = """
import sys
from servicekit.service import create_app
from services.{name}.main import SPEC
settings = SPEC.settings_cls(database_url="sqlite+aiosqlite:///{db}")
app = create_app(SPEC, settings, roles={roles!r})
print(" ".join(sorted(sys.modules)))
"""


def _imported(name: str, roles: tuple[str, ...], tmp_path: Path) -> set[str]:
    code = PROBE.format(name=name, db=tmp_path / f"{name}.db", roles=roles)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(done.stdout.split())


@pytest.mark.parametrize("name", SERVICES)
def test_a_relay_process_imports_none_of_the_services_code(name: str, tmp_path: Path) -> None:
    modules = _imported(name, (RELAY,), tmp_path)
    assert f"services.{name}.components" not in modules
    assert f"services.{name}.router" not in modules
    assert f"services.{name}.handlers" not in modules


def test_a_scoring_relay_leaves_the_numeric_stack_out(tmp_path: Path) -> None:
    modules = _imported("scoring", (RELAY,), tmp_path)
    assert not {"numpy", "scipy", "sklearn"} & modules


@pytest.mark.parametrize("roles", [(API,), (CONSUME,)])
def test_api_and_consume_processes_load_the_services_code(roles: tuple[str, ...], tmp_path: Path) -> None:
    modules = _imported("scoring", roles, tmp_path)
    assert "services.scoring.components" in modules
    assert "sklearn" in modules
