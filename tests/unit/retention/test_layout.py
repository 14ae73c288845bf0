"""The retention service's feature packages call downwards only, and share batch state through the unit of work."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3] / "services" / "retention"
PACKAGE = "services.retention"


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT.parent.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    target = target if target in modules else node.module
                    if target in modules and target != name:
                        graph[name].add(target)
    return graph


def test_no_module_imports_back_into_one_that_imports_it():
    graph = _imports(_modules())
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_batch_state_lives_on_the_unit_of_work_not_in_session_info():
    # session.info["..."], .info.get(...), .info.setdefault(...), .info.pop(...): a string-keyed cache.
    cache = re.compile(r"\.info\s*(\[|\.(get|setdefault|pop|update)\()")
    assert [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if cache.search(p.read_text())] == []
