"""Global vector ids: the int64 ``vector_id`` of a chunk is its FAISS id everywhere.

Shards built on different executors keep these ids through ``merge_from`` (IDMap2 and IVF
both carry ids), so a hit maps back to its chunk without any positional bookkeeping.
Duplicates must be caught *before* a merge: FAISS would accept them and search results
would then name the wrong chunk.
"""

from __future__ import annotations

import numpy as np

from lakechain.index.errors import DuplicateIdError

_FIX = "the chunks table holds the same chunk twice; re-run `lakechain embed` (it upserts by chunk_id)"


def as_ids(values: object) -> np.ndarray:
    """Any int sequence → contiguous int64 array (what FAISS wants)."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))


def duplicates(ids: np.ndarray) -> np.ndarray:
    """Ids that occur more than once (sorted, each listed once)."""
    if ids.size < 2:
        return np.empty(0, dtype=np.int64)
    s = np.sort(ids, kind="stable")
    dup = s[1:][s[1:] == s[:-1]]
    return np.unique(dup)


def check_unique(ids: np.ndarray, where: str = "") -> None:
    """Raise ``DuplicateIdError`` naming a few offending ids."""
    dup = duplicates(ids)
    if dup.size:
        raise DuplicateIdError(
            f"{dup.size} duplicate vector_id(s){' ' + where if where else ''}, e.g. {dup[:5].tolist()}: "
            f"{_FIX}"
        )


class IdRegistry:
    """Ids seen so far across shards; ``add`` refuses a shard that repeats any of them."""

    def __init__(self) -> None:
        self._seen = np.empty(0, dtype=np.int64)  # sorted

    def __len__(self) -> int:
        return int(self._seen.size)

    def add(self, ids: np.ndarray, where: str = "") -> None:
        ids = as_ids(ids)
        check_unique(ids, where)
        if self._seen.size and ids.size:
            pos = np.searchsorted(self._seen, ids)
            pos[pos == self._seen.size] = 0
            clash = ids[self._seen[pos] == ids]
            if clash.size:
                raise DuplicateIdError(
                    f"{clash.size} vector_id(s) {where + ' ' if where else ''}already in another shard, "
                    f"e.g. {np.unique(clash)[:5].tolist()}: {_FIX}"
                )
        self._seen = np.sort(np.concatenate([self._seen, ids]))
