"""BM25 keyword side of index builds: tokenizer, search, save/load, manifest, old builds."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pyarrow as pa
import pytest

from lakechain.index import build, keyword, search, store
from lakechain.index.errors import IndexCorruptError, KeywordIndexMissingError

TEXTS = [
    "failureException = <class 'AssertionError'> Assertion failed.",
    "Return a new partial object which when called will behave like func.",
    "pow(a, b) -- Same as a ** b.",
    "floordiv(a, b) -- Same as a // b.",
    "Exception raised by Queue.get(block=0)/get_nowait().",
    "Create and return a temporary directory; TemporaryDirectory removes it on exit.",
]
DIM = 8


@pytest.fixture(autouse=True)
def _fresh_cache():
    search.clear_cache()
    yield
    search.clear_cache()


def test_tokenize_keeps_identifiers_whole_and_split_and_operators():
    toks = keyword.tokenize("Raises AssertionError via get_nowait() if a ** b // c, with the lock")
    assert {"assertionerror", "assert", "error", "get_nowait", "get", "nowait", "**", "//"} <= set(toks)
    assert "with" not in toks and "the" not in toks  # Lucene stopwords
    assert "rais" in toks and keyword.tokenize("keywords parsing") == ["keyword", "pars"]  # stemmed
    assert "|" not in keyword.tokenize(" |  method(self) | - :")  # pydoc layout, not operators
    assert keyword.tokenize(None) == [] and keyword.tokenize("") == []


def test_search_finds_exact_terms_best_first_and_pads_misses():
    kw = keyword.KeywordIndex.build(TEXTS)
    scores, pos = kw.search(["Which class is AssertionError?", "what is a // b", "zebra giraffe"], 3)
    assert pos.shape == (3, 3) and scores.dtype == np.float32
    assert pos[0, 0] == 0 and pos[1, 0] == 3
    assert scores[0, 0] > 0 and np.all(np.diff(scores[0]) <= 0)
    assert (pos[2] == -1).all() and (scores[2] == 0).all()  # no shared token: nothing retrieved
    # k beyond the corpus: padded, never an error; texts sharing no token are not results
    scores, pos = kw.search(["AssertionError"], 50)
    assert pos.shape == (1, 50) and pos[0, 0] == 0 and (pos[0, 1:] == -1).all()


def test_save_and_load_round_trip(tmp_path):
    kw = keyword.KeywordIndex.build(TEXTS)
    files = kw.save(tmp_path)
    assert files and all(f.startswith("keyword/") and (tmp_path / f).is_file() for f in files)
    loaded = keyword.KeywordIndex.load(tmp_path, len(TEXTS))
    queries = ["AssertionError", "temporary directory", "a ** b"]
    for a, b in zip(kw.search(queries, 4), loaded.search(queries, 4), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="holds 6 texts"):
        keyword.KeywordIndex.load(tmp_path, len(TEXTS) + 1)


def save_build(root, texts, with_keyword=True):
    n = len(texts)
    x = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)[::-1] * 10 + 5  # not in row order: save_build sorts
    plan = build.plan_index(n, DIM, "flat")
    index = build.train(plan)
    build.add(index, x, ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": [f"c{i}" for i in ids],
            "doc_id": [f"d{i}" for i in ids],
            "chunk_index": pa.array([0] * n, pa.int32()),
            "text": list(texts),
        }
    )
    source = {"table": "chunks", "version": 1}
    manifest = store.make_manifest(plan, index, "m", source, shards=1)
    writer = keyword.write_index if with_keyword else None
    return store.save_build(root, index, rows, manifest, keyword=writer), ids


def test_build_holds_keyword_side_under_the_manifest(tmp_path):
    build_dir, ids = save_build(tmp_path / "index", TEXTS)
    manifest = store.read_manifest(build_dir)
    assert keyword.is_current(manifest)
    section = manifest["keyword"]
    assert section["count"] == len(TEXTS) and section["library"] == "bm25s"
    for f in section["files"]:
        assert manifest["files"][f]["sha256"] == store.sha256_file(build_dir / f)
    loaded = search.load(tmp_path / "index")
    assert loaded.has_keyword and loaded.keyword_missing == ""
    hits = loaded.search_keyword(["AssertionError", "a // b"], 2)
    # keyword positions map to the build's vector ids and chunk rows (rows sorted by vector_id)
    assert [h.text for h in (hits[0][0], hits[1][0])] == [TEXTS[0], TEXTS[3]]
    assert hits[0][0].vector_id == int(ids[0]) and hits[0][0].chunk_id == f"c{ids[0]}"


def test_a_damaged_keyword_file_is_refused(tmp_path):
    build_dir, _ = save_build(tmp_path / "index", TEXTS)
    victim = build_dir / store.read_manifest(build_dir)["keyword"]["files"][0]
    victim.write_bytes(victim.read_bytes() + b" ")
    with pytest.raises(IndexCorruptError, match="checksum"):
        search.load(build_dir)


def test_old_builds_without_keyword_side_load_dense_only(tmp_path):
    build_dir, _ = save_build(tmp_path / "index", TEXTS, with_keyword=False)
    manifest = store.read_manifest(build_dir)
    assert "keyword" not in manifest and not keyword.is_current(manifest)
    loaded = search.load(build_dir)
    assert not loaded.has_keyword and "lakechain index" in loaded.keyword_missing
    assert loaded.search_chunks(np.eye(DIM, dtype=np.float32)[:1], 2)[0]  # dense still works
    with pytest.raises(KeywordIndexMissingError, match="no keyword"):
        loaded.search_keyword(["AssertionError"], 2)


def test_a_build_from_another_tokenizer_is_not_current(tmp_path):
    build_dir, _ = save_build(tmp_path / "index", TEXTS)
    path = build_dir / store.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["keyword"]["tokenizer"] = "older"
    path.write_text(json.dumps(manifest))
    assert not keyword.is_current(manifest)
    assert not search.load(build_dir).has_keyword  # queries would be tokenized differently
    assert faiss.read_index(str(build_dir / store.INDEX_FILE)).ntotal == len(TEXTS)
