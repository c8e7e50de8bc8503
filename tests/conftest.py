"""Shared fixtures. ``tests/unit`` needs none of the Spark ones; Spark tests share ONE session.

Set ``LAKECHAIN_TEST_REMOTE=local[2]`` to run the Spark tests on a local Spark Connect
session instead of a classic one (CI does both).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_settings():
    """``conf/local.yaml`` with a small local[2] Spark: what every Spark test starts from."""
    from lakechain.config import load_settings

    overrides = ["spark.master=local[2]", "spark.shuffle_partitions=2"]
    if os.environ.get("LAKECHAIN_TEST_REMOTE"):
        overrides.append(f"spark.remote={os.environ['LAKECHAIN_TEST_REMOTE']}")
    return load_settings(REPO / "conf" / "local.yaml", overrides)


@pytest.fixture(scope="session")
def spark(base_settings, tmp_path_factory) -> Iterator[Any]:
    """The suite's one Spark session (native Delta; Spark Connect when asked), with its
    metastore in a session-wide temporary root."""
    from lakechain.storage.session import get_spark

    settings = base_settings.model_copy(deep=True)
    settings.storage.root = str(tmp_path_factory.mktemp("session-root"))
    session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture
def settings(base_settings, tmp_path):
    """Settings with a fresh storage root and a schema (database) of the test's own, so tests
    share the session's metastore without seeing each other's tables."""
    s = base_settings.model_copy(deep=True)
    s.storage.root = str(tmp_path / "lake")
    s.storage.schema_ = f"t_{uuid.uuid4().hex[:12]}"
    return s


@pytest.fixture
def tables(spark, settings):
    """The pipeline's tables for ``settings``."""
    from lakechain.storage.tables import Tables

    return Tables(spark, settings)


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[Any]:
    """One OpenAI-compatible test server per module (embeddings, chat, images, fault switches)."""
    from lakechain.testing.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(retry_after="0.01") as server:
        yield server


@pytest.fixture
def srv(fake_openai) -> Iterator[Any]:
    """The module's test server with its counters and fault switches reset around the test."""
    fake_openai.reset()
    yield fake_openai
    fake_openai.reset()


@pytest.fixture
def delta_rows() -> Callable[[Any, str], list[dict[str, Any]]]:
    """Rows of a table as an independent Delta reader (delta-rs) sees them, by its location:
    proof that what Spark wrote is plain Delta any reader opens.

    On the Spark Connect job the rows are read back through Spark instead: tables created
    through Spark Connect 4.2 record their strings as ``string collate UTF8_BINARY``, a type
    delta-rs 1.6 cannot read yet (classic sessions, which the main suite uses, do not)."""

    def read(tables: Any, name: str) -> list[dict[str, Any]]:
        if os.environ.get("LAKECHAIN_TEST_REMOTE"):
            return [r.asDict(recursive=True) for r in tables.read(name).collect()]
        from deltalake import DeltaTable

        return DeltaTable(tables.location(name)).to_pyarrow_table().to_pylist()

    return read
