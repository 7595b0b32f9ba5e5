"""The core imports only the standard library, attrs and itself."""

import ast
import sys
from pathlib import Path

import concert_domain

CORE = Path(concert_domain.__file__).parent
ALLOWED = set(sys.stdlib_module_names) | {"attrs", "concert_domain"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_core_imports_only_the_standard_library_and_attrs() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 10, "the walk found too few modules to mean anything"
    offenders = {
        str(path.relative_to(CORE)): sorted(imported_roots(path) - ALLOWED) for path in modules
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_import_check_catches_infrastructure(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("import sqlalchemy\nfrom redis.asyncio import Redis\nimport attrs\n")
    assert imported_roots(module) - ALLOWED == {"sqlalchemy", "redis"}


def test_the_core_never_reads_the_clock_or_environment() -> None:
    forbidden = ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time(", "os.environ")
    hits = [
        f"{path.relative_to(CORE)}: {needle}"
        for path in CORE.rglob("*.py")
        for needle in forbidden
        if needle in path.read_text()
    ]
    assert hits == []
