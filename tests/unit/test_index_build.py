"""Pure FAISS/Arrow tests of shard building and merging (no Spark)."""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pytest

from lakechain.index import build, shards
from lakechain.index.errors import DuplicateIdError, IndexBuildError
from lakechain.index.ids import IdRegistry, check_unique


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """OpenMP spin-waiting makes FAISS 10x slower on a busy 2-core machine; one thread is steady."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return unit(rng.standard_normal((n, d)))


def clustered_unit(rng: np.random.Generator, n: int, d: int, centres: int = 500, noise: float = 0.6):
    """Random normalised vectors around random centres: the structure real embeddings have."""
    c = rng.standard_normal((centres, d))
    return unit(c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d)))


def unique_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    ids = np.unique(rng.integers(0, 2**62, n * 2, dtype=np.int64))
    rng.shuffle(ids)
    return ids[:n]


def batches(vectors: np.ndarray, ids: np.ndarray, batch: int = 700) -> list[pa.RecordBatch]:
    """Chunk rows as Spark would hand them to mapInArrow (list<float> embedding)."""
    out = []
    for s in range(0, len(ids), batch):
        v, i = vectors[s : s + batch], ids[s : s + batch]
        emb = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (len(i) + 1) * v.shape[1], v.shape[1]), pa.int32()),
            pa.array(v.reshape(-1), pa.float32()),
        )
        out.append(
            pa.RecordBatch.from_pydict(
                {
                    "vector_id": pa.array(i, pa.int64()),
                    "chunk_id": [f"c{x}" for x in i],
                    "doc_id": [f"d{x % 97}" for x in i],
                    "chunk_index": pa.array(np.arange(len(i)) % 5, pa.int32()),
                    "text": [f"text of {x}" for x in i],
                    "embedding": emb,
                }
            )
        )
    return out


def sharded(
    vectors: np.ndarray, ids: np.ndarray, template: np.ndarray, cuts: list[int], stage_dir: str | None = None
) -> shards.Merged:
    """Build one shard per slice (as partitions would) and merge them as the driver does."""
    bounds = [0, *cuts, len(ids)]
    rows = []
    for p, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        out = shards.build_shard(batches(vectors[a:b], ids[a:b]), template, vectors.shape[1], p, stage_dir)
        rows.append(out.to_pylist()[0])
    return shards.merge_shard_rows(rows, template)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


@pytest.mark.parametrize("staged", [False, True], ids=["in-rows", "staged-files"])
def test_sharded_flat_equals_single_index_and_brute_force(tmp_path, staged):
    rng = np.random.default_rng(1)
    n, d, k = 4000, 48, 10
    x, ids = random_unit(rng, n, d), unique_ids(rng, n)
    q = random_unit(rng, 60, d)
    plan = build.plan_index(n, d, "auto")
    assert plan.kind == "flat"
    template = build.to_bytes(build.train(plan))
    merged = sharded(x, ids, template, [500, 1700, 1701, 3333], str(tmp_path) if staged else None)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == (sorted([".arrow", ".f32"] * 5) if staged else [])
    assert merged.shards == 5 and merged.index.ntotal == n and merged.errors.num_rows == 0

    got_s, got_i = merged.index.search(q, k)
    single = faiss.IndexFlatIP(d)
    single.add(x)
    ref_s, ref_pos = single.search(q, k)
    brute = np.argsort(-(q @ x.T), axis=1)[:, :k]
    np.testing.assert_array_equal(got_i, ids[ref_pos])
    np.testing.assert_array_equal(got_i, ids[brute])
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-5, atol=1e-6)
    # the chunk rows travelled with their vectors
    rows = merged.rows.to_pydict()
    by_id = dict(zip(rows["vector_id"], rows["chunk_id"], strict=True))
    assert len(by_id) == n and all(by_id[int(i)] == f"c{int(i)}" for i in got_i[:, 0])
    # the id map really is global: reconstruct by id returns that id's vector
    np.testing.assert_allclose(merged.index.reconstruct(int(ids[1234])), x[1234])


@pytest.mark.parametrize("staged", [False, True], ids=["in-rows", "staged-files"])
def test_sharded_ivf_equals_single_process_ivf_and_has_recall(tmp_path, staged):
    """20k clustered random unit vectors, dim 64 (384 is slower, the code path is the same)."""
    rng = np.random.default_rng(2)
    n, d, k = 20_000, 64, 10
    both = clustered_unit(rng, n + 300, d)  # queries come from the same distribution
    x, q, ids = both[:n], both[n:], unique_ids(rng, n)
    plan = build.plan_index(n, d, "auto", ivf_min_rows=10_000, train_sample=20_000)
    assert plan.kind == "ivf" and plan.nlist == 512  # 4·sqrt(20k)=566, capped at 20k/39
    template = build.to_bytes(build.train(plan, x[rng.permutation(n)[:20_000]]))
    merged = sharded(x, ids, template, [5000, 11000, 15000], str(tmp_path) if staged else None)
    assert len(list(tmp_path.glob("*.faiss"))) == (4 if staged else 0)
    build.set_nprobe(merged.index, 16)
    _, got = merged.index.search(q, k)

    single = build.from_bytes(template)
    build.add(single, x, ids)
    build.set_nprobe(single, 16)
    _, ref = single.search(q, k)
    np.testing.assert_array_equal(got, ref)  # merging shards changes nothing

    exact = ids[np.argsort(-(q @ x.T), axis=1)[:, :k]]
    assert recall(got, exact) >= 0.95
    assert sorted(build.ids_of(merged.index).tolist()) == sorted(ids.tolist())


def test_ivf_shards_with_differently_trained_quantizers_do_not_merge():
    rng = np.random.default_rng(3)
    x = random_unit(rng, 3000, 16)
    plan = build.IndexPlan("ivf", 16, nlist=8)
    a, b = build.train(plan, x[:1500], seed=1), build.train(plan, x[1500:], seed=2)
    build.add(a, x[:10], np.arange(10))
    build.add(b, x[10:20], np.arange(10, 20))
    with pytest.raises(RuntimeError):
        build.merge_into(a, b)


def test_ivfpq_build_merges_and_finds_neighbours():
    rng = np.random.default_rng(4)
    n, d = 4000, 64
    x, ids = clustered_unit(rng, n, d, centres=100), unique_ids(rng, n)
    plan = build.plan_index(n, d, "ivfpq", pq_m=16, train_sample=n)
    # 4000 training points allow 102 per sub-quantizer centroid set: 6 bits (64 centroids)
    assert plan.description == f"IVF{plan.nlist},PQ16x6np"
    template = build.to_bytes(build.train(plan, x))
    merged = sharded(x, ids, template, [1500, 2500])
    build.set_nprobe(merged.index, 16)
    q = x[:200]
    _, got = merged.index.search(q, 10)
    exact = ids[np.argsort(-(q @ x.T), axis=1)[:, :10]]
    assert merged.index.ntotal == n
    assert recall(got, exact) >= 0.4  # 12-byte codes of 64-dim vectors: lossy but useful
    assert np.mean(got[:, :3] == ids[:200, None]) * 3 >= 0.9  # each vector finds itself near the top


def test_vectors_from_arrow_reports_bad_rows_and_normalises():
    good = [3.0, 4.0, 0.0]
    col = pa.array(
        [good, None, [1.0, 2.0], [float("nan"), 0, 1], [0.0, 0.0, 0.0], [1.0, None, 0.0], [0.0, 1.0, 0.0]],
        pa.list_(pa.float32()),
    )
    vb = shards.vectors_from_arrow(col, 3)
    assert vb.rows.tolist() == [0, 6]
    np.testing.assert_allclose(vb.matrix, [[0.6, 0.8, 0.0], [0.0, 1.0, 0.0]], rtol=1e-6)
    assert dict(vb.errors) == {
        1: "null embedding",
        2: "embedding has 2 values, not 3",
        3: "non-finite value in embedding",
        4: "zero vector",
        5: "non-finite value in embedding",
    }
    # sliced arrays (non-zero offsets) and double values are read correctly
    doubles = pa.array([[9.0, 9, 9], good, [0, 0, 2.0]], pa.list_(pa.float64()))
    sliced = shards.vectors_from_arrow(doubles.slice(1), 3)
    np.testing.assert_allclose(sliced.matrix, [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], rtol=1e-6)
    assert sliced.matrix.dtype == np.float32 and sliced.matrix.flags.c_contiguous


def test_build_shard_rejects_rows_without_ids_and_keeps_rows_aligned():
    rng = np.random.default_rng(5)
    x = random_unit(rng, 6, 4)
    batch = pa.RecordBatch.from_pydict(
        {
            "vector_id": pa.array([10, None, 12, 13, 14, 15], pa.int64()),
            "chunk_id": ["a", "b", None, "d", "e", "f"],
            "doc_id": ["D"] * 6,
            "chunk_index": pa.array(range(6), pa.int32()),
            "text": list("abcdef"),
            "embedding": pa.array([*x[:4].tolist(), None, x[5].tolist()], pa.list_(pa.float32())),
        }
    )
    template = build.to_bytes(build.train(build.IndexPlan("flat", 4)))
    row = shards.build_shard(iter([batch]), template, 4, 7).to_pylist()[0]
    shard = shards.Shard.decode(row)
    assert shard.shard == 7 and row["n"] == 3 and row["path"] is None
    assert shard.ids.tolist() == [10, 13, 15]
    assert shard.meta.column("chunk_id").to_pylist() == ["a", "d", "f"]
    assert {(e["chunk_id"], e["reason"]) for e in shard.errors.to_pylist()} == {
        ("b", "missing vector_id"),
        (None, "missing chunk_id"),
        ("e", "null embedding"),
    }
    vectors = np.frombuffer(shard.payload, np.float32).reshape(3, 4)  # a flat shard is its vectors
    np.testing.assert_allclose(vectors, x[[0, 3, 5]], rtol=1e-6)
    merged = shards.merge_shard_rows([row], template)
    np.testing.assert_allclose(merged.index.reconstruct(13), x[3], rtol=1e-6)
    assert shards.build_shard(iter([]), template, 4) is None


def test_flat_from_parts_checks_sizes(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    (tmp_path / "a.f32").write_bytes(x[:2].tobytes())
    parts = [str(tmp_path / "a.f32"), x[2:].tobytes()]  # a staged file, then an in-row buffer
    index = build.flat_from_parts(4, np.array([7, 8, 9, 10, 11, 12]), parts)
    np.testing.assert_array_equal(index.reconstruct(9), x[2])
    assert index.ntotal == 6 and build.ids_of(index).tolist() == [7, 8, 9, 10, 11, 12]
    with pytest.raises(IndexBuildError, match="3 vectors for 6 ids"):
        build.flat_from_parts(4, np.arange(6), [x[:3].tobytes()])
    with pytest.raises(IndexBuildError, match="more vectors"):
        build.flat_from_parts(4, np.arange(2), [str(tmp_path / "a.f32"), x[:1].tobytes()])


def test_duplicate_ids_are_refused_before_merging():
    rng = np.random.default_rng(6)
    x = random_unit(rng, 100, 8)
    ids = np.arange(100, dtype=np.int64)
    template = build.to_bytes(build.train(build.IndexPlan("flat", 8)))
    rows = [
        shards.build_shard(batches(x[a:b], ids[a:b]), template, 8, p).to_pylist()[0]
        for p, (a, b) in enumerate([(0, 60), (50, 100)])
    ]
    with pytest.raises(DuplicateIdError, match="already in another shard.*50"):
        shards.merge_shard_rows(rows, template)
    with pytest.raises(DuplicateIdError, match="2 duplicate"):
        check_unique(np.array([1, 2, 2, 3, 3, 3]))
    reg = IdRegistry()
    reg.add(np.array([5, 1]))
    reg.add(np.array([7, 2]))
    assert len(reg) == 4


def test_plan_index_choices():
    assert build.plan_index(199_999, 384).kind == "flat"
    p = build.plan_index(1_000_000, 384)
    assert (p.kind, p.nlist) == ("ivf", 2564)  # 4·sqrt(1M)=4000 capped by 100k/39
    assert build.plan_index(1_000_000, 384, train_sample=1_000_000).nlist == 4000
    assert build.plan_index(100, 8, "ivf").nlist == 2
    assert build.plan_index(10, 8, "ivf", nlist=64).nlist == 10
    pq = build.plan_index(500_000, 384, "ivfpq")
    assert (pq.pq_m, pq.pq_nbits) == (48, 8)
    assert build.plan_index(5_000, 100, "ivfpq", pq_m=48, train_sample=5000).pq_m == 25
    assert build.pq_bits(1000) == 4
    with pytest.raises(IndexBuildError, match="run `lakechain embed`"):
        build.plan_index(0, 384)
    with pytest.raises(IndexBuildError, match="index.kind"):
        build.plan_index(10, 8, "hnsw")
