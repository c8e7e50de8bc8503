"""On Databricks (job cluster or serverless) Lakechain uses the runtime's session as it is.

Why: a Python file task may start with no active session, and the runtime has neither the
delta-spark wheel nor a place for a local metastore; building a local session there would
fail (or, on serverless, is impossible). Checked without starting Spark: the builder is a
stand-in that refuses any local setting.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakechain.config import load_settings
from lakechain.storage import session


class _RuntimeBuilder:
    """``SparkSession.builder`` as the test allows it: getOrCreate only, no configuration."""

    def __init__(self, runtime_session: object) -> None:
        self.runtime_session = runtime_session

    def getOrCreate(self) -> object:  # Spark's name
        return self.runtime_session

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"builder.{name}: no local session settings on Databricks")


@pytest.fixture
def no_active_session(monkeypatch: pytest.MonkeyPatch) -> object:
    runtime_session = object()
    monkeypatch.setattr(SparkSession, "getActiveSession", classmethod(lambda cls: None))
    monkeypatch.setattr(SparkSession, "builder", _RuntimeBuilder(runtime_session))

    def no_lock(settings: object) -> None:
        raise AssertionError("the local metastore lock must not be taken on Databricks")

    monkeypatch.setattr(session, "lock_metastore", no_lock)
    return runtime_session


@pytest.mark.parametrize("runtime_version", ["17.3", "client.4.5"])  # job cluster, serverless
def test_the_runtime_session_is_used_on_databricks(
    monkeypatch: pytest.MonkeyPatch, no_active_session: object, runtime_version: str
) -> None:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", runtime_version)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    settings = load_settings(None, ["storage.catalog=main", "storage.root=/Volumes/main/lakechain/files"])
    assert session.get_spark(settings) is no_active_session


def test_off_databricks_a_local_session_is_built(
    monkeypatch: pytest.MonkeyPatch, no_active_session: object
) -> None:
    """The same call off Databricks goes on to the local path (here: the refused lock)."""
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    with pytest.raises(AssertionError, match="metastore lock"):
        session.get_spark(load_settings(None, ["storage.root=/tmp/lakechain-unused"]))
