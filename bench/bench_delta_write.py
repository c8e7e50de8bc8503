"""Local Delta write (delta-rs backed source) vs Spark's built-in Parquet writer.

    .venv/bin/python bench/bench_delta_write.py [--rows 100000] [--repeat 3]

Same cached DataFrame (id, ~100-char text, 384-float vector), same session, same run;
prints the median seconds of each and the ratio delta / parquet (target <= 1.3).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from pyspark.sql import functions as F

from lakechain.config import load_settings
from lakechain.storage.session import get_spark
from lakechain.storage.tables import Tables


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-delta-")
    settings = load_settings("conf/local.yaml", [f"storage.root={root}"])
    spark = get_spark(settings)
    tables = Tables(spark, settings)
    df = (
        spark.range(args.rows, numPartitions=spark.sparkContext.defaultParallelism * 2)
        .withColumn("text", F.expr("repeat(concat('chunk ', CAST(id AS STRING), ' '), 8)").substr(1, 100))
        .withColumn("vec", F.expr(f"transform(sequence(1, {args.dim}), i -> CAST(rand() AS FLOAT))"))
        .cache()
    )
    df.count()
    delta_s, parquet_s = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        tables.write(df, f"bench_{i}", "overwrite")
        delta_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        df.write.mode("overwrite").parquet(f"{root}/parquet_{i}")
        parquet_s.append(time.perf_counter() - t)
    d, p = statistics.median(delta_s), statistics.median(parquet_s)
    print(f"rows={args.rows} dim={args.dim} repeat={args.repeat}")
    print(f"delta (local source)  median {d:.2f}s  runs {[round(x, 2) for x in delta_s]}")
    print(f"parquet (built-in)    median {p:.2f}s  runs {[round(x, 2) for x in parquet_s]}")
    print(f"ratio delta/parquet = {d / p:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
