"""Two writers on one storage root: neither duplicates a row, and a rerun repairs duplicates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lakechain.embed.stage import run_embed

REPO = Path(__file__).resolve().parents[2]


def test_two_embed_processes_at_once_leave_every_chunk_once(tmp_path, delta_rows, spark, base_settings):
    """The second process waits for the root's lock, then finds nothing left to embed."""
    root = tmp_path / "lake"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    cmd = [str(Path(sys.executable).parent / "lakechain"), "embed", "--config", "conf/local.yaml",
           "--set", f"storage.root={root}", "--set", "spark.master=local[1]"]  # fmt: skip
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=pipe, stderr=pipe, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    ids = [r["chunk_id"] for r in delta_rows(_tables(spark, base_settings, root), "chunks")]
    assert ids and len(ids) == len(set(ids))
    assert any("0 embedded" in out for out, _ in outs), "the second writer must find the work done"


def test_a_rerun_repairs_duplicate_chunk_rows(spark, settings, tables, tmp_path, delta_rows):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Delta Lake is an open table format.")
    settings.corpus.path = str(corpus)
    run_embed(spark, settings, tables, progress=False)
    tables.write(tables.read("chunks"), "chunks", "append")  # e.g. a writer outside Lakechain
    assert len(delta_rows(tables, "chunks")) == 2
    report = run_embed(spark, settings, tables, progress=False)
    assert len(delta_rows(tables, "chunks")) == 1 and any("repaired 1 chunk" in n for n in report.notes)


def _tables(spark, base_settings, root):
    from lakechain.storage.tables import Tables

    s = base_settings.model_copy(deep=True)
    s.storage.root = str(root)
    return Tables(spark, s)
