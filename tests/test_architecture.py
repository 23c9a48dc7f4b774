"""The import rules of ../shared/ARCHITECTURE.md, checked on every module's source.

Relative imports would slip past a check of module names, so they count as offenders here too
(ruff's TID252 bans them as well).
"""

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


RELATIVE = "a relative import"


def _imports(path: Path) -> set[str]:
    """The top-level names a module imports, and RELATIVE if it imports relatively."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                names.add(RELATIVE)
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    paths = sorted((REPO_ROOT / package).rglob("*.py"))
    # A moved or renamed package must fail here, not pass by checking nothing.
    assert paths, f"no modules found in {package}/"
    return paths


def test_a_relative_import_is_an_offence(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from . import sibling\nfrom .pkg import thing\nimport config\n")
    assert _imports(module) == {RELATIVE, "config"}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_architecture_allows(package: str) -> None:
    offenders = {}
    for path in _modules(package):
        imported = _imports(path)
        bad = (imported & (OURS | {RELATIVE})) - ALLOWED[package] - {package}
        bad |= imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders, offenders
