"""Pure FAISS: choose an index type, train it once, build shards with global ids, merge.

Every index uses inner product on L2-normalised vectors (= cosine similarity). The three
kinds, chosen by ``settings.index.kind``:

* ``flat``  - ``IndexIDMap2(IndexFlatIP)``: exact search; ``merge_from`` concatenates the
  shards' vectors and id maps. Default (``auto``) below ``index.ivf_min_rows`` (200k) vectors.
* ``ivf``   - ``IVF{nlist},Flat``: approximate, ~nprobe/nlist of the vectors scanned per
  query; ids are stored in the inverted lists. Default (``auto``) from ``ivf_min_rows`` up.
* ``ivfpq`` - ``IVF{nlist},PQ{m}x{nbits}``: like ``ivf`` with vectors compressed to m bytes.

IVF shards can only be merged when they share one coarse quantizer (and PQ codebooks), so
the empty index is trained ONCE on the driver from a sample and the trained, empty index
is shipped to every partition as bytes (``to_bytes``/``from_bytes``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import faiss
import numpy as np

from lakechain.index.errors import IndexBuildError

Kind = Literal["flat", "ivf", "ivfpq"]

MAX_NLIST = 65_536
MIN_POINTS_PER_CENTROID = 39
"""FAISS warns below 39 training points per centroid; nlist is capped so that never happens."""


@dataclass(frozen=True)
class IndexPlan:
    """What to build; recorded in the manifest so a rebuild can tell whether config changed."""

    kind: Kind
    dim: int
    nlist: int = 0
    pq_m: int = 0
    pq_nbits: int = 0

    @property
    def description(self) -> str:
        if self.kind == "flat":
            return "IDMap2,Flat"
        if self.kind == "ivf":
            return f"IVF{self.nlist},Flat"
        # "np": no polysemous training (it is slow and only helps Hamming-filtered search).
        return f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_nbits}np"

    @property
    def needs_training(self) -> bool:
        return self.kind != "flat"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.description}


def default_nlist(n: int, n_train: int) -> int:
    """~4·sqrt(n) lists, at most 65,536 and at most n_train/39 (enough points per centroid)."""
    want = int(round(4 * math.sqrt(max(n, 1))))
    cap = max(1, min(MAX_NLIST, n_train // MIN_POINTS_PER_CENTROID))
    return max(1, min(want, cap))


def pq_subquantizers(dim: int, wanted: int) -> int:
    """Largest divisor of ``dim`` not above ``wanted`` (PQ needs dim % m == 0)."""
    for m in range(min(wanted, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


def pq_bits(n_train: int) -> int:
    """8 bits (256 centroids per sub-quantizer) when the sample allows, fewer for tiny tables."""
    per = max(2, n_train // MIN_POINTS_PER_CENTROID)
    return max(1, min(8, int(math.log2(per))))


def plan_index(
    n: int,
    dim: int,
    kind: str = "auto",
    ivf_min_rows: int = 200_000,
    nlist: int | None = None,
    pq_m: int = 48,
    train_sample: int = 100_000,
) -> IndexPlan:
    """Resolve ``index.kind`` (auto | flat | ivf | ivfpq) for ``n`` vectors of ``dim``."""
    if n <= 0:
        raise IndexBuildError("no valid vectors to index in the chunks table; run `lakechain embed`")
    if dim <= 0:
        raise IndexBuildError(f"invalid embedding dimension {dim}")
    if kind == "auto":
        kind = "flat" if n < ivf_min_rows else "ivf"
    if kind == "flat":
        return IndexPlan("flat", dim)
    if kind not in ("ivf", "ivfpq"):
        raise IndexBuildError(f"index.kind must be auto, flat, ivf or ivfpq, got {kind!r}")
    n_train = min(n, train_sample)
    lists = min(nlist, max(1, n_train)) if nlist else default_nlist(n, n_train)
    if kind == "ivf":
        return IndexPlan("ivf", dim, nlist=lists)
    return IndexPlan("ivfpq", dim, nlist=lists, pq_m=pq_subquantizers(dim, pq_m), pq_nbits=pq_bits(n_train))


def make_empty(plan: IndexPlan) -> faiss.Index:
    """An empty (untrained for IVF) index that accepts ``add_with_ids``."""
    if plan.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(plan.dim))
    return faiss.index_factory(plan.dim, plan.description, faiss.METRIC_INNER_PRODUCT)


def train(plan: IndexPlan, sample: np.ndarray | None = None, seed: int = 1234) -> faiss.Index:
    """Empty index ready for ``add_with_ids``; IVF kinds are trained on ``sample`` (driver side)."""
    index = make_empty(plan)
    if not plan.needs_training:
        return index
    if sample is None or len(sample) == 0:
        raise IndexBuildError(f"{plan.description} needs a training sample")
    x = as_matrix(sample, plan.dim)
    if len(x) < plan.nlist:
        raise IndexBuildError(f"{plan.description}: {len(x)} training vectors for {plan.nlist} lists")
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = seed
    index.train(x)
    return index


def as_matrix(x: np.ndarray, dim: int) -> np.ndarray:
    """C-contiguous float32 (n, dim) view/copy; raises on a wrong dimension."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise IndexBuildError(f"expected vectors of dimension {dim}, got shape {x.shape}")
    return np.ascontiguousarray(x)


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Add vectors under their global ids (never positional ids: those collide on merge)."""
    if len(vectors) == 0:
        return
    index.add_with_ids(as_matrix(vectors, index.d), np.ascontiguousarray(ids, dtype=np.int64))


def to_bytes(index: faiss.Index) -> np.ndarray:
    """Serialised index as a uint8 array (no extra copy into ``bytes``)."""
    return faiss.serialize_index(index)


def from_bytes(data: Any) -> faiss.Index:
    """Inverse of ``to_bytes``; accepts bytes, bytearray, memoryview, Arrow buffers, uint8 arrays."""
    arr = data if isinstance(data, np.ndarray) else np.frombuffer(memoryview(data), dtype=np.uint8)
    return faiss.deserialize_index(arr)


def merge_into(base: faiss.Index, other: faiss.Index) -> None:
    """Move ``other``'s vectors and ids into ``base`` (``add_id=0``: ids kept as they are).

    Works for IDMap2 (vectors + id map + reverse map) and IVF (inverted lists with ids);
    IVF requires both to come from the same trained template. ``other`` is emptied.
    """
    if base.d != other.d:
        raise IndexBuildError(f"cannot merge shards of dimension {other.d} into {base.d}")
    base.merge_from(other, 0)


def is_flat(index: faiss.Index) -> bool:
    """True for the exact kind (``IndexIDMap2`` over a flat index)."""
    return isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap)


def flat_from_parts(dim: int, ids: np.ndarray, parts: Iterable[Any]) -> faiss.Index:
    """``IndexIDMap2(IndexFlatIP)`` over the concatenation of raw float32 parts, in one copy.

    A flat shard is nothing but its vectors and ids, so shards travel as raw float32 bytes
    (a buffer, or a file path) and are copied straight into the index's storage: no
    serialise/deserialise/merge copies. The parts, in order, must hold ``len(ids)`` rows.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    flat = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(flat)  # keeps a reference to `flat`
    nbytes = len(ids) * dim * 4
    if nbytes == 0:
        return index
    flat.codes.resize(nbytes)
    storage = faiss.rev_swig_ptr(flat.codes.data(), nbytes)
    offset = 0
    for part in parts:
        if isinstance(part, str | os.PathLike):
            size = os.path.getsize(part)
            if offset + size > nbytes:
                raise IndexBuildError(f"shard file {part} holds more vectors than its rows")
            with open(part, "rb", buffering=0) as f:
                view = memoryview(storage[offset : offset + size])  # type: ignore[arg-type]
                got = 0
                while got < size:
                    n = f.readinto(view[got:])
                    if not n:
                        raise IndexBuildError(f"shard file {part} is truncated ({got} of {size} bytes)")
                    got += n
        else:
            data = np.frombuffer(memoryview(part), dtype=np.uint8)
            size = data.size
            if offset + size > nbytes:
                raise IndexBuildError("a shard holds more vectors than its rows")
            storage[offset : offset + size] = data
        offset += size
    if offset != nbytes:
        raise IndexBuildError(f"shards hold {offset // (4 * dim)} vectors for {len(ids)} ids")
    flat.ntotal = len(ids)
    faiss.copy_array_to_vector(ids, index.id_map)
    index.ntotal = len(ids)
    index.construct_rev_map()
    return index


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Lists scanned per query for IVF kinds (capped at nlist); no-op for flat."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    ivf.nprobe = int(max(1, min(nprobe, ivf.nlist)))


def ids_of(index: faiss.Index) -> np.ndarray:
    """All ids stored in an IDMap/IDMap2 or IVF index (used by export and checks)."""
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    assert invlists is not None  # an IVF index always has its inverted lists
    parts = []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)
