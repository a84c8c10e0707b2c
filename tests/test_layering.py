"""Dependencies point one way: ingest_core <- producers <- worker (whose cli sits above both).

Read from the source with ``ast``, so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(package: str) -> dict[str, set[str]]:
    """module path -> top-level packages it imports (absolute imports only; we use no relative ones)."""
    out: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(REPO))] = names
    return out


def test_core_imports_neither_producers_nor_worker() -> None:
    offenders = {m: n & {"producers", "worker"} for m, n in _imports("ingest_core").items()}
    assert {m: n for m, n in offenders.items() if n} == {}


def test_producers_never_import_worker() -> None:
    offenders = {m: n & {"worker"} for m, n in _imports("producers").items()}
    assert {m: n for m, n in offenders.items() if n} == {}


def test_pipeline_stages_never_import_celery() -> None:
    stages = _imports("worker/pipeline")
    assert {m for m, n in stages.items() if n & {"celery", "kombu"}} == set()


def test_only_the_cli_imports_producers_from_worker() -> None:
    users = {m for m, n in _imports("worker").items() if "producers" in n}
    assert users <= {str(Path("worker") / "cli.py"), str(Path("worker/ops/deadletters.py"))}, users
