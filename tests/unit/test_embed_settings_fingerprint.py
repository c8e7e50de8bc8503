"""What makes a document's chunks out of date, and when a corpus table's changes are enough."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakechain.config import load_settings
from lakechain.embed.incremental import FeedState, change_feed_start, settings_fingerprint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local():
    return load_settings(REPO / "conf" / "local.yaml")


def test_the_fingerprint_names_chunking_and_model(local):
    assert settings_fingerprint(local) == (
        "chunker=1;tokenizer=local;chunk_tokens=200;overlap_tokens=32;model=all-MiniLM-L6-v2"
    )


@pytest.mark.parametrize(
    "key, value",
    [("chunking.chunk_tokens", 64), ("chunking.overlap_tokens", 8), ("embedding.dimensions", 16)],
)
def test_whatever_changes_chunks_or_vectors_changes_the_fingerprint(local, key, value):
    changed = local.model_copy(deep=True)
    section, field = key.split(".")
    setattr(getattr(changed, section), field, value)
    assert settings_fingerprint(changed) != settings_fingerprint(local)


def test_batching_and_retries_leave_the_fingerprint_alone(local):
    changed = local.model_copy(deep=True)
    changed.embedding.batch_size, changed.embedding.max_retries, changed.embedding.commit_every = 7, 9, 11
    assert settings_fingerprint(changed) == settings_fingerprint(local)


STATE: FeedState = {"corpus": "s.docs", "table_id": "id-1", "source_version": 4, "documents_version": 9}


def start(state: FeedState | None = STATE, **kw):
    args = {"corpus": "s.docs", "table_id": "id-1", "version": 6, "change_feed": True, "documents_version": 9}
    return change_feed_start(state, **{**args, **kw})


def test_changes_after_the_recorded_version_are_enough():
    assert start() == (5, None)


def test_a_table_without_change_data_feed_is_read_in_full_with_a_note():
    first, note = start(change_feed=False)
    assert first is None and "delta.enableChangeDataFeed = true" in (note or "")


@pytest.mark.parametrize(
    "state, kw",
    [(None, {}), (STATE, {"corpus": "s.other"}), (STATE, {"documents_version": None})],
)
def test_without_a_state_for_this_table_it_is_read_in_full_silently(state, kw):
    assert start(state, **kw) == (None, None)


@pytest.mark.parametrize(
    "kw, says",
    [
        ({"table_id": "id-2"}, "re-created"),
        ({"version": 3}, "before version 4"),
        ({"documents_version": 10}, "documents was written by another run"),
    ],
)
def test_a_state_that_no_longer_describes_documents_means_a_full_read(kw, says):
    first, note = start(**kw)
    assert first is None and says in (note or "")
