"""Saving, loading, verifying and searching index builds (no Spark)."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from lakechain.index import build, search, store
from lakechain.index.errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStaleError,
)

DIM = 16


@pytest.fixture(autouse=True)
def _fresh_cache():
    search.clear_cache()
    yield
    search.clear_cache()


def vectors(seed: int, n: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chunk_rows(ids: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "vector_id": pa.array(ids, pa.int64()),
            "chunk_id": [f"chunk-{i}" for i in ids],
            "doc_id": [f"doc-{i % 7}" for i in ids],
            "chunk_index": pa.array([int(i % 3) for i in ids], pa.int32()),
            "text": [f"the text of chunk {i}" for i in ids],
        }
    )


def save(root: Path, seed: int = 0, n: int = 300, model: str = "mini", version: int = 3, kind: str = "flat"):
    x = vectors(seed, n)
    ids = np.random.default_rng(seed + 100).permutation(10**6)[:n].astype(np.int64) * 1_000_003
    plan = build.plan_index(n, DIM, kind, train_sample=n)
    index = build.train(plan, x if plan.needs_training else None)
    build.add(index, x, ids)
    source = {"table": "chunks", "name": "chunks", "path": "/lake/chunks", "version": version}
    manifest = store.make_manifest(plan, index, model, source, shards=1, nprobe=8)
    return store.save_build(root, index, chunk_rows(ids), manifest), x, ids


def test_save_load_and_search_maps_ids_to_chunks(tmp_path):
    root = tmp_path / "index"
    build_dir, x, ids = save(root)
    assert store.read_pointer(root) == build_dir.name
    assert sorted(p.name for p in build_dir.iterdir()) == ["ids.parquet", "index.faiss", "manifest.json"]
    manifest = store.read_manifest(build_dir)
    assert manifest["count"] == 300 and manifest["dim"] == DIM and manifest["model"] == "mini"
    assert manifest["files"]["index.faiss"]["sha256"] == store.sha256_file(build_dir / "index.faiss")

    for where in (build_dir, root, tmp_path):  # a build dir, the index root, the files root
        loaded = search.load(where, expected_model="mini", expected_dim=DIM, expected_table_version=3)
        assert loaded.path == build_dir and loaded.count == 300

    q = x[[5, 17, 250]]
    scores, got = loaded.search(q, 4)
    brute = np.argsort(-(q @ x.T), axis=1)[:, :4]
    np.testing.assert_array_equal(got, ids[brute])
    hits = loaded.search_chunks(q, 4)
    for row, qi in zip(hits, [5, 17, 250], strict=True):
        top = row[0]
        assert top.vector_id == ids[qi] and top.chunk_id == f"chunk-{ids[qi]}"
        assert top.doc_id == f"doc-{ids[qi] % 7}" and top.text == f"the text of chunk {ids[qi]}"
        assert top.score == pytest.approx(1.0, abs=1e-5)
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
    # a threshold drops weak hits; asking for more than exists pads with nothing
    assert all(h.score >= 0.5 for h in loaded.search_chunks(q, 10, score_threshold=0.5)[0])
    assert len(loaded.search_chunks(q[:1], 1000)[0]) == 300
    assert loaded.lookup([-1, 12345, int(ids[0])])[:2] == [None, None]
    assert loaded.lookup([int(ids[0])])[0]["chunk_id"] == f"chunk-{ids[0]}"


def test_ivf_build_uses_manifest_nprobe(tmp_path):
    build_dir, x, ids = save(tmp_path / "index", n=2000, kind="ivf")
    loaded = search.load(build_dir)
    assert faiss.extract_index_ivf(loaded.index).nprobe == 8
    assert faiss.extract_index_ivf(search.load(build_dir, nprobe=3).index).nprobe == 3
    assert loaded.search_chunks(x[:1], 1)[0][0].vector_id == ids[0]


def test_mismatches_are_refused_with_the_fix(tmp_path):
    root = tmp_path / "index"
    save(root)
    with pytest.raises(IndexMismatchError, match="model 'mini' but the configured model is 'other'"):
        search.load(root, expected_model="other")
    with pytest.raises(IndexMismatchError, match="16-dim vectors but the embedder produces 384"):
        search.load(root, expected_dim=384)
    stale = "version 3 but the table is now at version 4.*lakechain index --force"
    with pytest.raises(IndexStaleError, match=stale):
        search.load(root, expected_table_version=4)
    with pytest.raises(IndexMismatchError, match="dimension 16"):
        search.load(root).search(np.ones((2, 8), np.float32), 3)
    # the cached path checks expectations on every call too
    assert search.cached_load(root, expected_model="mini") is search.cached_load(root)
    with pytest.raises(IndexMismatchError):
        search.cached_load(root, expected_model="other")


def test_missing_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(IndexNotFoundError, match="run `lakechain index` first"):
        search.load(tmp_path / "nothing")
    root = tmp_path / "index"
    build_dir, _, _ = save(root)

    data = bytearray((build_dir / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (build_dir / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="checksum"):
        search.load(root)
    (build_dir / "index.faiss").unlink()
    with pytest.raises(IndexCorruptError, match="index.faiss is missing"):
        search.load(root)
    (build_dir / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        search.load(root)
    (root / "CURRENT").write_text("build-gone\n")
    with pytest.raises(IndexCorruptError, match="directory is missing"):
        search.load(root)


def test_truncated_index_with_matching_manifest_is_refused_without_verify(tmp_path):
    build_dir, _, _ = save(tmp_path / "index")
    path = build_dir / "index.faiss"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match="cannot be read by FAISS"):
        search.load(build_dir, verify=False)


@pytest.mark.parametrize("fail_at", ["write_index", "write_pointer"])
def test_interrupted_save_leaves_previous_build_current(tmp_path, monkeypatch, fail_at):
    root = tmp_path / "index"
    first, _, ids = save(root, seed=1)

    def boom(*args, **kwargs):
        raise OSError(f"disk full during {fail_at}")

    target = store.faiss if fail_at == "write_index" else store
    monkeypatch.setattr(target, fail_at, boom)
    with pytest.raises(OSError, match="disk full"):
        save(root, seed=2, version=4)
    monkeypatch.undo()

    assert store.read_pointer(root) == first.name
    assert [b.name for b in store.list_builds(root)] == [first.name]  # partial dir removed
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]
    loaded = search.load(root, expected_table_version=3)
    assert set(loaded.rows.column("vector_id").to_pylist()) == set(ids.tolist())


def test_new_builds_switch_pointer_prune_old_ones_and_refresh_the_cache(tmp_path):
    root = tmp_path / "index"
    a, _, _ = save(root, seed=1, version=1)
    cached_a = search.cached_load(root)
    b, _, _ = save(root, seed=2, version=2)
    orphan = root / "build-00000000T000000000000Z-deadbeef"  # an old crashed build
    orphan.mkdir()
    os.utime(orphan, (0, 0))
    c, _, _ = save(root, seed=3, version=3)
    assert [p.name for p in store.list_builds(root)] == [b.name, c.name]
    assert store.read_pointer(root) == c.name
    assert search.cached_load(root).table_version == 3
    assert cached_a.table_version == 1  # an index already loaded keeps working
    assert search.cached_load(root) is search.cached_load(root)
    assert store.current_manifest(root)["source"]["version"] == 3


def test_staleness_names_both_versions_and_the_fix(tmp_path):
    from lakechain.index.store import delta_log_version, staleness

    log = tmp_path / "chunks" / "_delta_log"
    log.mkdir(parents=True)
    for v in (0, 1, 2):
        (log / f"{v:020d}.json").write_text("{}")
    (log / "00000000000000000002.checkpoint.parquet").write_text("")
    assert delta_log_version(tmp_path / "chunks") == 2 and delta_log_version(tmp_path / "nope") is None
    manifest = {"source": {"table": "chunks", "version": 1}}
    assert staleness(manifest, 2) == (
        "the index was built from chunks v1, which is now at v2: answers miss what changed since; "
        "run `lakechain index`"
    )
    assert staleness(manifest, 1) is None and staleness(None, 5) is None
