"""Shared fixtures: ONE local[2] Spark session for the whole suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_settings():
    from lakechain.config import load_settings

    overrides = ["spark.master=local[2]", "spark.shuffle_partitions=2"]
    return load_settings(REPO / "conf" / "local.yaml", overrides)


@pytest.fixture(scope="session")
def spark(base_settings, tmp_path_factory) -> Iterator:
    from lakechain.storage.session import get_spark

    warehouse = tmp_path_factory.mktemp("warehouse")
    settings = base_settings.model_copy(deep=True)
    settings.spark.conf = {"spark.sql.warehouse.dir": str(warehouse)}
    session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture
def settings(base_settings, tmp_path):
    """Settings whose storage root is a fresh directory for each test."""
    s = base_settings.model_copy(deep=True)
    s.storage.root = str(tmp_path / "lake")
    return s


@pytest.fixture
def tables(spark, settings):
    from lakechain.storage.tables import Tables

    return Tables(spark, settings)
