"""The package's shape, enforced: where Spark may be imported, and no classic-only Spark APIs.

Why: Databricks serverless and shared clusters run Spark Connect, where ``sparkContext``,
accumulators and ``_jvm`` do not exist; and pure modules stay importable (and testable)
without Spark.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib" / "lakechain"
SPARK_MODULES = {"embed/corpus.py", "tasks/input.py", "tasks/cache_table.py"}
"""Spark modules allowed besides ``storage/`` and each ``*/stage.py``: the readers, and the
response cache's join and MERGE (shared by the task stage and ``lakechain cache``)."""
CLASSIC_ONLY = {"sparkContext", "_jvm", "_jsparkSession", "accumulator", "AccumulatorParam", "broadcast"}
TABLE_DDL = re.compile(r"\b(chunk_id|task_id|doc_id) string\b")


def _modules() -> list[Path]:
    return sorted(LIB.rglob("*.py"))


def _imports_pyspark(path: Path) -> bool:
    """A runtime import of pyspark (imports under ``if TYPE_CHECKING:`` do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pyspark" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyspark":
            return True
    return False


def test_only_storage_stages_and_spark_readers_import_pyspark():
    offenders = []
    for path in _modules():
        rel = path.relative_to(LIB).as_posix()
        allowed = rel.startswith("storage/") or rel.endswith("/stage.py") or rel in SPARK_MODULES
        if not allowed and _imports_pyspark(path):
            offenders.append(rel)
    assert offenders == [], (
        f"pyspark imported outside storage/, */stage.py and the Spark readers: {offenders}"
    )


def test_no_module_uses_apis_missing_on_spark_connect():
    """Names in code (not in strings or comments) that only a classic session has."""
    offenders = []
    for path in _modules():
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        for tok in tokens:
            if tok.type == tokenize.NAME and tok.string in CLASSIC_ONLY:
                offenders.append(f"{path.relative_to(LIB)}:{tok.start[0]}: {tok.line.strip()}")
    assert offenders == [], "\n".join(offenders)


def test_every_table_schema_lives_in_the_schemas_module():
    offenders = [
        p.relative_to(LIB).as_posix()
        for p in _modules()
        if p.name != "schemas.py" and TABLE_DDL.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"table schemas defined outside storage/schemas.py: {offenders}"


def test_test_module_basenames_are_unique_across_test_folders():
    """pytest's default import mode keys test modules by basename: a name used in two folders
    stops the whole suite at collection (CI ran only ``pytest``, the folders one at a time hid it)."""
    tests = LIB.parents[1] / "tests"
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(tests.rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(tests)} and {path.relative_to(tests)}")
        seen.setdefault(path.name, path)
    assert not clashes, clashes
