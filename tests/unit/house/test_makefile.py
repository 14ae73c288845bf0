"""The developer loop in the Makefile: `make help` lists every target, and `make test` (deploy/test.sh, which
CI reaches through .ci/run) checks formatting and types as `make check` does."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from servicekit.settings import REPO_ROOT

MAKEFILE = (REPO_ROOT / "Makefile").read_text()
# A rule line: a target name, a colon that is not an assignment (:= or ::=).
RULE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*)\s*:(?![:=])(.*)$")


def _rules() -> dict[str, str]:
    """target -> the rest of its rule line (prerequisites and comment); file targets ($(STAMP)) left out."""
    return {m.group(1): m.group(2) for line in MAKEFILE.splitlines() if (m := RULE.match(line))}


def _phony() -> set[str]:
    joined = MAKEFILE.replace("\\\n", " ")
    return {name for line in joined.splitlines() if line.startswith(".PHONY:") for name in line.split()[1:]}


def test_the_makefile_has_the_targets_the_readme_and_docs_name() -> None:
    assert {"help", "run", "test", "check", "unit", "lint", "types", "docs", "hooks"} <= set(_rules())


def test_every_target_says_what_it_does() -> None:
    silent = [name for name, rest in _rules().items() if not re.search(r"##\s+\S", rest)]
    assert silent == [], f"targets without a `## ` help comment: {silent}"


def test_every_target_is_phony() -> None:
    assert set(_rules()) - _phony() == set()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target() -> None:
    out = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[1] for line in out.splitlines() if line.strip().startswith("make ")}
    assert listed == set(_rules())


def test_make_test_and_make_check_run_lint_format_check_and_mypy() -> None:
    test_sh = (REPO_ROOT / "deploy" / "test.sh").read_text()
    for command in ('"$BIN/ruff" check .', '"$BIN/ruff" format --check .', '"$BIN/mypy"', "pytest tests/unit"):
        assert command in test_sh, command
    assert re.search(r"^test:.*\n(\t.*\n)*\tbash deploy/test.sh\n", MAKEFILE, re.MULTILINE)
    check = _rules()["check"].split("##")[0].split()
    assert {"lint", "types"} <= set(check)
    assert "$(BIN)/ruff format --check ." in MAKEFILE


def test_ci_runs_only_the_readme_test_command() -> None:
    ci = [
        line
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == ["make test"]
    assert "make test" in (REPO_ROOT / "README.md").read_text()


def test_the_pre_commit_hooks_are_local_and_use_the_venv() -> None:
    import yaml

    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert all(repo["repo"] == "local" for repo in config["repos"])
    assert {"ruff-check", "ruff-format"} <= set(hooks)
    assert all(hook["entry"].startswith(".venv/bin/") and hook["language"] == "system" for hook in hooks.values())
