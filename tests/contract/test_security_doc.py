"""Every test the security documents name as proof exists: docs/security.md's threat model cannot point
at a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from servicekit.settings import REPO_ROOT

DOCS = [REPO_ROOT / "docs" / "security.md", *sorted((REPO_ROOT / "docs" / "security").glob("*.md"))]
REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


@cache
def _test_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def test_every_test_named_in_the_security_documents_exists() -> None:
    references = [(doc.name, m.group(1), m.group(2)) for doc in DOCS for m in REFERENCE.finditer(doc.read_text())]
    assert len(references) > 20  # the threat model names its proofs
    missing = [
        f"{doc}: {file}::{name}"
        for doc, file, name in references
        if not (REPO_ROOT / file).exists() or name not in _test_names(REPO_ROOT / file)
    ]
    assert missing == []
