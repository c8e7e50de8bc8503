"""One Spark session factory for every entry point: classic, Spark Connect, or the active one.

* On Databricks, or wherever a session is already active, it is reused untouched.
* ``spark.remote`` (or ``SPARK_REMOTE``) selects Spark Connect: ``sc://host:port`` attaches
  to a running server, ``local[N]`` starts pyspark's own local Connect server.
* Otherwise, when ``lakechain server start`` runs a server for ``storage.root``, the
  session attaches to it (``storage/server.py``): no JVM start.
* Otherwise a classic local session is built for a laptop.

Local sessions get native Delta Lake (delta-spark's jars from Maven, the artifact that
``configure_spark_with_delta_pip`` names) and a metastore under ``<storage.root>/_metastore``,
so table names persist between processes. That metastore is an embedded Derby database,
which one JVM opens at a time: a second local writer on the same root waits for the lock
(``storage.lock_timeout_s``) instead of failing on Derby's error. A Derby directory left
half-made by a killed first run is set aside before Derby sees it (:func:`repair_catalog`);
the tables under the root are registered again by ``Tables``.

Read-only commands (``reader=True``) never touch the metastore or its lock: they get an
in-memory catalog and read the root's tables by path, so they read committed snapshots
while a writer holds the root (Delta's snapshot isolation).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from lakechain.config import Settings
from lakechain.errors import StorageBusyError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SCALA = "2.13"
METASTORE_DIR = "_metastore"
METASTORE_DB = "metastore_db"
_HELD_LOCKS: dict[str, int] = {}


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def delta_coordinate() -> str:
    """``io.delta:delta-spark_<spark major.minor>_2.13:<delta-spark version>``, as the wheel's
    ``configure_spark_with_delta_pip`` builds it: the installed pair decides the artifact."""
    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_{SCALA}:{metadata.version('delta-spark')}"


def jars_record() -> Path:
    """Where the resolved Delta jar paths are kept after the first resolution."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lakechain" / (delta_coordinate().replace(":", "_") + ".jars")


def delta_jars_conf() -> dict[str, str]:
    """``spark.jars`` when the jars were resolved before (offline, no resolver output), else
    ``spark.jars.packages`` (Spark's resolver fetches them from Maven Central once)."""
    record = jars_record()
    if record.is_file():
        jars = record.read_text(encoding="utf-8").split()
        if jars and all(os.path.isfile(j) for j in jars):
            return {"spark.jars": ",".join(jars)}
    return {"spark.jars.packages": delta_coordinate()}


def remember_jars(spark: SparkSession) -> None:
    """Record the jar files Spark resolved, so later sessions skip the resolver."""
    with contextlib.suppress(Exception):
        listed = spark.conf.get("spark.jars", "") or ""
        jars = [j.removeprefix("file://").removeprefix("file:") for j in listed.split(",")]
        jars = [j for j in jars if j.endswith(".jar") and os.path.isfile(j)]
        if any("delta-spark" in os.path.basename(j) for j in jars):
            record = jars_record()
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text("\n".join(jars) + "\n", encoding="utf-8")


def submit_args() -> list[str]:
    """``spark-submit`` options that put Delta's jars on the driver's classpath: the JVM is
    started before any Python runs, so a session cannot add them itself there."""
    jars = delta_jars_conf()
    if "spark.jars" in jars:
        return ["--jars", jars["spark.jars"]]
    return ["--packages", jars["spark.jars.packages"]]


def catalog_conf(settings: Settings, reader: bool = False) -> dict[str, str]:
    """The catalog of a local session: the root's Derby metastore, or for a reader an
    in-memory one (its warehouse a private temporary directory, so nothing is written under
    the root or the working directory)."""
    if reader:
        import atexit
        import shutil
        import tempfile

        warehouse = tempfile.mkdtemp(prefix="lakechain-reader-")
        atexit.register(shutil.rmtree, warehouse, True)
        return {"spark.sql.catalogImplementation": "in-memory", "spark.sql.warehouse.dir": warehouse}
    meta = os.path.join(os.path.abspath(settings.storage.root), METASTORE_DIR)
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": os.path.join(meta, "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={os.path.join(meta, METASTORE_DB)};create=true"
        ),
        "spark.driver.extraJavaOptions": f'"-Dderby.system.home={meta}"',
    }


def local_conf(settings: Settings, reader: bool = False) -> dict[str, str]:
    """Spark settings of a session Lakechain starts itself (never applied to an active one)."""
    cfg = settings.spark
    conf = {
        **delta_jars_conf(),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        **catalog_conf(settings, reader),
        # Delta reads its log with this many tasks; 50 (the default) dominates small tables.
        "spark.databricks.delta.snapshotPartitions": str(max(1, min(cfg.shuffle_partitions, 8))),
        # The post-commit checksum file recomputes the table's state after every commit (a Spark
        # job each): half the cost of a small local commit, and only a debugging aid.
        "spark.databricks.delta.writeChecksumFile.enabled": "false",
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.arrow_batch_size),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": cfg.log_level,
    }
    conf.update(cfg.conf)
    return conf


def remote_url(settings: Settings) -> str | None:
    return settings.spark.remote or os.environ.get("SPARK_REMOTE") or None


def get_spark(settings: Settings, reader: bool = False) -> SparkSession:
    """The active session, else a new one as the settings say (see the module doc).
    ``reader``: a session of its own that only reads, without the root's metastore or lock."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks():
        # The runtime's own session (Spark Connect on serverless): the local jars, metastore
        # and lock below do not apply there, and the wheel brings no delta-spark.
        return SparkSession.builder.getOrCreate()
    remote = remote_url(settings)
    if remote and remote.startswith("sc://"):
        return SparkSession.builder.remote(remote).getOrCreate()
    from lakechain.storage import server

    url = None if remote else server.attach_url(settings)
    if url:
        return attach_server(url, settings)
    # Executors' Python workers must import the same packages as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if not reader:
        server.refuse_if_owned(settings)
        lock_metastore(settings)
    conf = local_conf(settings, reader)
    builder = SparkSession.builder.appName(settings.spark.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():
        # A local Connect server gets static settings at start; the client then tries to set
        # them again at run time and warns that it cannot (they are already in force).
        warnings.filterwarnings("ignore", message="Failed to set")
        if remote:
            spark = builder.remote(remote).getOrCreate()
        else:
            spark = builder.master(settings.spark.master).getOrCreate()
    if "spark.jars.packages" in conf:
        remember_jars(spark)
    return spark


# Set when a session starts: a running server keeps the values it was started with.
_STATIC_SQL = (
    "spark.sql.extensions",
    "spark.sql.catalog.spark_catalog",
    "spark.sql.catalogImplementation",
    "spark.sql.warehouse.dir",
)


def attach_server(url: str, settings: Settings) -> SparkSession:
    """The root's ``lakechain server``'s shared Connect session with this command's runtime
    SQL settings (one config call); this client's channel closes when the process exits,
    the session stays for the next command (``storage.server`` module doc)."""
    import atexit

    from pyspark.sql import SparkSession

    from lakechain.storage import server

    builder = SparkSession.builder.remote(url)
    for key, value in local_conf(settings).items():
        if key.startswith(("spark.sql.", "spark.databricks.")) and key not in _STATIC_SQL:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    server.keep_session_open(spark)
    atexit.register(spark.stop)
    return spark


def lock_metastore(settings: Settings) -> None:
    """Hold ``<root>/_metastore/.lock`` for this process's life (the OS frees it on exit,
    even on SIGKILL), waiting up to ``storage.lock_timeout_s`` for another holder."""
    meta = os.path.join(os.path.abspath(settings.storage.root), METASTORE_DIR)
    if meta in _HELD_LOCKS:
        return
    try:
        os.makedirs(meta, exist_ok=True)
        fd = os.open(os.path.join(meta, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageBusyError(
            f"storage.root {os.path.abspath(settings.storage.root)}: cannot create {meta} ({exc.strerror}); "
            "point storage.root at a writable directory"
        ) from None
    deadline = time.monotonic() + settings.storage.lock_timeout_s
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StorageBusyError(
                    f"another Lakechain process is using {settings.storage.root} (lock {meta}/.lock); "
                    "wait for it to finish, or raise storage.lock_timeout_s"
                ) from None
            if not waited:
                log.warning("waiting for another Lakechain process on %s", settings.storage.root)
                waited = True
            time.sleep(0.5)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD_LOCKS[meta] = fd
    repair_catalog(meta)


# Derby writes this line last into service.properties, once a new database is whole.
_DERBY_LAST_LINE = b"#--- last line, don't put anything after this line ---"


def repair_catalog(meta: str) -> str | None:
    """Set aside a Derby database that a killed first run left half-made, before any JVM
    opens it; returns where it went (None: nothing to repair). Called with the root's lock
    held, so no other process has it open.

    Why: Derby writes ``service.properties`` last when it creates a database; a directory
    without a whole one makes Derby refuse to boot it forever (``XBM0A``). Nothing in it is
    needed: the metastore only names the Delta tables under the root, which ``Tables``
    registers again, and the views over them. Once ``service.properties`` is whole, Derby's
    own log recovers any later crash, and the Hive schema is completed on the next start."""
    db = os.path.join(meta, METASTORE_DB)
    if not os.path.isdir(db) or os.path.exists(os.path.join(db, "service.propertiesold")):
        return None  # none yet, or Derby's own backup to recover from
    try:
        with open(os.path.join(db, "service.properties"), "rb") as f:
            if _DERBY_LAST_LINE in f.read():
                return None
    except FileNotFoundError:
        pass
    aside = f"{db}.half-made-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    os.rename(db, aside)
    log.warning(
        "catalog %s was left half-made by an interrupted run: set aside as %s; a new one is "
        "created and the tables under the root are registered again",
        db,
        os.path.basename(aside),
    )
    return aside


@contextlib.contextmanager
def arrow_batch(spark: SparkSession, rows: int) -> Iterator[None]:
    """Rows per Arrow batch handed to pandas/Arrow UDFs while the block runs (a runtime
    setting, so it works on Spark Connect too)."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    old = spark.conf.get(key, None)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        if old is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, old)


@contextlib.contextmanager
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """``df`` cached (memory, spilling to disk) while the block runs: read several times,
    computed once. Only for frames without model calls in them: an evicted block is
    recomputed. Nested blocks drop the newest first, which Spark needs to avoid re-planning
    a cached frame built on the one dropped."""
    from pyspark import StorageLevel

    cached = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield cached
    finally:
        cached.unpersist()


def query_errors() -> tuple[type[Exception], ...]:
    """Errors caused by a SQL query itself (ParseException is an AnalysisException): its text,
    its names or its data under ANSI casts. Anything else is a bug and keeps its traceback."""
    from pyspark.errors import (
        AnalysisException,
        ArithmeticException,
        ArrayIndexOutOfBoundsException,
        DateTimeException,
        NumberFormatException,
    )

    return (
        AnalysisException,
        ArithmeticException,
        ArrayIndexOutOfBoundsException,
        DateTimeException,
        NumberFormatException,
    )


def is_connect(spark: object) -> bool:
    """True for a Spark Connect session (no SparkContext, no JVM in this process's API)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: SparkSession) -> int:
    """Task slots for sizing partitions, without a SparkContext (absent under Connect):
    ``local[N]`` gives N, ``local[*]`` the cores, a cluster its default parallelism."""
    with contextlib.suppress(Exception):
        value = spark.conf.get("spark.default.parallelism", None)
        if value:
            return max(1, int(value))
    with contextlib.suppress(Exception):
        master = spark.conf.get("spark.master", "") or ""
        if master.startswith("local"):
            n = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
            return max(1, os.cpu_count() or 1) if n.startswith("*") else max(1, int(n.split(",")[0]))
    with contextlib.suppress(Exception):
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "2") or 2))
    return 2


if __name__ == "__main__":  # pragma: no cover - scripts/setup.sh: fetch the Delta jars once
    from lakechain.config import load_settings

    s = load_settings(
        None,
        [
            f"storage.root={sys.argv[1] if len(sys.argv) > 1 else '/tmp/lakechain-setup'}",
            "spark.master=local[1]",
        ],
    )
    session = get_spark(s)
    session.sql("SELECT 1").collect()
    session.stop()
    print(f"Delta jars ready: {delta_coordinate()} ({jars_record()})")
