"""What must hold of a storage root after ANY event (a kill, a concurrent writer, a full disk),
checked without a second JVM: delta-rs reads the classic-Spark tables and the index is files.

* every table opens, and every data file its log references exists;
* no key is held by two rows (a duplicated commit or a replayed batch would show here);
* the current index build's files exist with the sha256 its manifest records;
* after a completed run: the staging tables are empty and the content equals a reference run's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from deltalake import DeltaTable

KEYS = {"documents": "doc_id", "chunks": "chunk_id", "tasks": "task_id", "results": "task_id"}
"""The key each table holds at most once."""
STAGING = ("embed_staging", "results_staging")
VOLATILE = {"run_id", "created_at", "ingested_at", "embedded_at", "latency_ms", "index_table_version"}
"""Columns that name a run, a moment or the chunks version the index was built from (how
many commits the kills split the embedding into), not the content."""

Rows = dict[str, list[dict[str, Any]]]


def _path(uri: str) -> str:
    return unquote(urlparse(uri).path) if "://" in uri else uri


def tables_of(root: Path) -> list[str]:
    """Every Delta table directory under the root (any directory with a ``_delta_log``)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())


def check_root(root: Path) -> Rows:
    """Assert the invariants every event must leave; returns each table's rows."""
    rows: Rows = {}
    for name in tables_of(root):
        log = root / name / "_delta_log"
        if not any(p.suffix in (".json", ".checkpoint") or "checkpoint" in p.name for p in log.iterdir()):
            continue  # created but never committed: Delta treats it as no table
        table = DeltaTable(str(root / name))  # raises on a corrupt or truncated log
        missing = [u for u in table.file_uris() if not os.path.exists(_path(u))]
        assert not missing, (
            f"{name} v{table.version()} references {len(missing)} missing files: {missing[:3]}"
        )
        rows[name] = table.to_pyarrow_table().to_pylist()
        key = KEYS.get(name)
        if key:
            dupes = {k: n for k, n in Counter(r[key] for r in rows[name]).items() if n > 1}
            assert not dupes, (
                f"{name} holds {len(dupes)} {key}s more than once, e.g. {list(dupes.items())[:3]}"
            )
    for r in rows.get("results", []):
        assert not r["image_path"] or os.path.isfile(r["image_path"]), (
            f"results names a lost {r['image_path']}"
        )
    check_index(root)
    return rows


def check_index(root: Path) -> dict[str, Any] | None:
    """The build ``index/CURRENT`` names is complete: every manifest file exists, same sha256."""
    pointer = root / "index" / "CURRENT"
    if not pointer.exists():
        return None
    build = root / "index" / pointer.read_text().strip()
    manifest = json.loads((build / "manifest.json").read_text())
    for rel, entry in manifest["files"].items():
        f = build / rel
        assert f.is_file(), f"index manifest names {rel}, missing from {build}"
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{f} does not match its manifest's sha256"
    return manifest


def check_settled(root: Path, rows: Rows) -> None:
    """After a run completed: nothing left in staging, and the index covers every chunk."""
    for name in STAGING:
        assert not rows.get(name), f"{name} still holds {len(rows.get(name, []))} rows after a completed run"
    manifest = check_index(root)
    assert manifest is not None, "no current index after a completed run"
    assert manifest["count"] == len(rows["chunks"]), (manifest["count"], len(rows["chunks"]))


def content(rows: Rows, root: Path) -> dict[str, list[dict[str, Any]]]:
    """The tables' content: volatile columns dropped, paths made relative to the root, rows
    sorted by key, so two roots that hold the same data compare equal."""
    out = {}
    for name in (*KEYS, "ingest_errors"):
        table = []
        for r in rows.get(name, []):
            r = {k: v for k, v in r.items() if k not in VOLATILE}
            if r.get("image_path"):
                r["image_path"] = os.path.relpath(r["image_path"], root)
            table.append(r)
        key = KEYS.get(name)
        out[name] = sorted(table, key=lambda r: r[key] if key else json.dumps(r, sort_keys=True, default=str))
    return out


def assert_same_content(got: Rows, got_root: Path, ref: Rows, ref_root: Path) -> None:
    """The tables equal the reference run's; vectors to float tolerance (a batch of other
    chunks may round the last bit differently)."""
    a, b = content(got, got_root), content(ref, ref_root)
    for name in a:
        assert len(a[name]) == len(b[name]), f"{name}: {len(a[name])} rows, the reference has {len(b[name])}"
        for x, y in zip(a[name], b[name], strict=True):
            vx, vy = x.pop("embedding", None), y.pop("embedding", None)
            assert x == y, f"{name} differs from the reference:\n{x}\n{y}"
            if vx is not None or vy is not None:
                assert np.allclose(np.asarray(vx), np.asarray(vy), atol=1e-5), f"{name} {x.get('chunk_id')}"
