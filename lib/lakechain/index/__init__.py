"""FAISS index stage: shards per Spark partition merged on the driver, saved with a manifest.

Pure parts (no Spark): ``build`` (plan/train/merge), ``shards`` (Arrow → shard), ``store``
(build directories, CURRENT pointer), ``search`` (load + batched search), ``export``
(LangChain). The Spark layer is ``stage.run_index`` (imported lazily here so that
search-only users, e.g. task workers, do not import pyspark through this package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakechain.index.errors import (
    DuplicateIdError,
    IndexBuildError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStaleError,
    KeywordIndexMissingError,
    LakechainIndexError,
)
from lakechain.index.search import Hit, LoadedIndex, cached_load, clear_cache, load
from lakechain.index.store import index_root

if TYPE_CHECKING:
    from lakechain.index.stage import IndexReport


def run_index(*args: Any, **kwargs: Any) -> IndexReport:
    """See ``lakechain.index.stage.run_index``."""
    from lakechain.index.stage import run_index as _run

    return _run(*args, **kwargs)


def export_langchain(*args: Any, **kwargs: Any) -> Any:
    """See ``lakechain.index.export.export_langchain`` (needs langchain-community)."""
    from lakechain.index.export import export_langchain as _export

    return _export(*args, **kwargs)


__all__ = [
    "DuplicateIdError",
    "Hit",
    "IndexBuildError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStaleError",
    "KeywordIndexMissingError",
    "LakechainIndexError",
    "LoadedIndex",
    "cached_load",
    "clear_cache",
    "export_langchain",
    "index_root",
    "load",
    "run_index",
]
