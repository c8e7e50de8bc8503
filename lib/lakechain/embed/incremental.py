"""What decides whether a document is chunked and embedded again (pure; no Spark).

A document is skipped before chunking when ``documents`` already holds it with the same
content hash, the same :func:`settings_fingerprint` and all of its ``chunk_count`` chunks in
``chunks`` for the current model. For a corpus table with Delta's change data feed on,
:func:`change_feed_start` says from which version its changes are enough, or why the table
must be read in full.
"""

from __future__ import annotations

from typing import TypedDict

from lakechain.config import Settings
from lakechain.embed.chunking import tokenizer_kind
from lakechain.embed.embedders import model_name

CHUNKER_VERSION = 1
"""Bump when ``chunking.py`` splits text differently: every document is re-chunked once."""


def settings_fingerprint(settings: Settings) -> str:
    """Everything a document's chunk ids and vectors depend on besides its text, readable in SQL.
    Batch sizes, retries and endpoints are left out: they change no chunk and no vector."""
    ch, emb = settings.chunking, settings.embedding
    return (
        f"chunker={CHUNKER_VERSION};tokenizer={tokenizer_kind(emb.provider)};chunk_tokens={ch.chunk_tokens};"
        f"overlap_tokens={ch.overlap_tokens};model={model_name(emb)}"
    )


class FeedState(TypedDict):
    """The ``embed_state`` row a run leaves (see ``storage.schemas.EMBED_STATE_COLUMNS``)."""

    corpus: str
    table_id: str
    source_version: int
    documents_version: int | None


def change_feed_start(
    state: FeedState | None,
    corpus: str,
    table_id: str,
    version: int,
    change_feed: bool,
    documents_version: int | None,
) -> tuple[int | None, str | None]:
    """(first version whose changes to read, None), or (None, why the table is read in full;
    None when there is nothing to say, e.g. a first run).

    The changes are enough only when ``documents`` is exactly what the last read of this same
    table left (same Delta table id, ``documents`` not written since) and the table has not
    gone back in versions.
    """
    if not change_feed:
        return None, (
            f"corpus table {corpus} has no change data feed: read in full (set its property "
            "delta.enableChangeDataFeed = true to read only its changes)"
        )
    if state is None or state["corpus"] != corpus or documents_version is None:
        return None, None
    if state["table_id"] != table_id:
        return None, f"corpus table {corpus} was re-created since the last run: read in full"
    if state["source_version"] > version:
        return None, (
            f"corpus table {corpus} is at version {version}, before version {state['source_version']} "
            "read last run: read in full"
        )
    if state["documents_version"] != documents_version:
        return None, "documents was written by another run since the last read of its table: read in full"
    return state["source_version"] + 1, None
