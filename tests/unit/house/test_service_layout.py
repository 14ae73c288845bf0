"""Every service's feature packages call downwards only, and share batch state through the unit of work."""

import ast
import re
from pathlib import Path

import pytest

SERVICES_DIR = Path(__file__).resolve().parents[3] / "services"
SERVICES = ("customer", "interaction", "scoring", "retention")


def _modules(service: str) -> dict[str, Path]:
    root = SERVICES_DIR / service
    found = {}
    for path in root.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(SERVICES_DIR.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(modules: dict[str, Path], package: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    target = target if target in modules else node.module
                    if target in modules and target != name:
                        graph[name].add(target)
    return graph


@pytest.mark.parametrize("service", SERVICES)
def test_no_module_imports_back_into_one_that_imports_it(service: str) -> None:
    graph = _imports(_modules(service), f"services.{service}")
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


@pytest.mark.parametrize("service", SERVICES)
def test_batch_state_lives_on_the_unit_of_work_not_in_session_info(service: str) -> None:
    root = SERVICES_DIR / service
    # session.info["..."], .info.get(...), .info.setdefault(...), .info.pop(...): a string-keyed cache.
    cache = re.compile(r"\.info\s*(\[|\.(get|setdefault|pop|update)\()")
    assert [str(p.relative_to(root)) for p in root.rglob("*.py") if cache.search(p.read_text())] == []
