"""``python -m gateway key create`` on a fresh store: it migrates the store, then prints the new key once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servicekit.settings import REPO_ROOT


def test_key_create_migrates_a_fresh_store_and_prints_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "CRM_STATE_DIR": str(tmp_path)}
    env.pop("GATEWAY_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "key", "create", "--name", "erp", "--role", "integration"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("crmk_")
    assert (tmp_path / "gateway.db").exists()
