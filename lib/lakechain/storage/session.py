"""One Spark session factory for every entry point.

On Databricks or any cluster the active session is reused untouched. Locally a session
is built for a laptop (few shuffle partitions, quiet logs, Python workers running this
interpreter) and the delta-rs backed ``delta`` source is registered when no native Delta
is on the classpath.
"""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from lakechain.config import Settings

log = logging.getLogger(__name__)

_LOCAL_DELTA_REGISTERED = "lakechain.localDelta"


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def native_delta_available(spark: SparkSession) -> bool:
    """True where the JVM Delta implementation is present (Databricks, or jars configured)."""
    if on_databricks():
        return True
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: the server decides; assume a real Delta there.
        return True
    try:
        jvm.org.apache.spark.util.Utils.classForName(
            "org.apache.spark.sql.delta.DeltaLog", True, False
        )
        return True
    except Exception:
        return False


def uses_local_delta(spark: SparkSession) -> bool:
    return spark.conf.get(_LOCAL_DELTA_REGISTERED, "false") == "true"


def get_spark(settings: Settings) -> SparkSession:
    active = SparkSession.getActiveSession()
    if active is not None:
        spark = active
    else:
        # Executors' Python workers must import the same packages as the driver.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        cfg = settings.spark
        builder = (
            SparkSession.builder.master(cfg.master)
            .appName(cfg.app_name)
            .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.arrow_batch_size))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.ui.enabled", "false")
        )
        for key, value in cfg.conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(cfg.log_level)
    ensure_delta(spark, settings)
    return spark


def ensure_delta(spark: SparkSession, settings: Settings) -> None:
    """Register the local ``delta`` source unless native Delta serves that name."""
    if uses_local_delta(spark):
        return
    mode = settings.storage.delta
    if mode == "native" or (mode == "auto" and native_delta_available(spark)):
        return
    from lakechain.storage.delta_source import DeltaDataSource

    spark.dataSource.register(DeltaDataSource)
    spark.conf.set(_LOCAL_DELTA_REGISTERED, "true")
    log.info("native Delta not found: using the delta-rs backed Python data source")
