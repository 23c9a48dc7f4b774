"""The import rules of ../shared/ARCHITECTURE.md, checked on every module's source."""

import ast
from pathlib import Path

import pytest

from config import REPO_ROOT

OURS = {"config", "nlp", "storage", "migrations", "bot"}
ALLOWED = {
    "config": set(),
    "nlp": {"config"},
    "storage": {"config"},
    "migrations": {"config", "storage"},
    "bot": {"config", "storage", "nlp"},
}
FORBIDDEN_THIRD_PARTY = {"nlp": {"telegram", "sqlalchemy", "alembic", "apscheduler"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_architecture_allows(package: str) -> None:
    offenders = {}
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        imported = _imports(path)
        bad = (imported & OURS) - ALLOWED[package] - {package}
        bad |= imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders, offenders
