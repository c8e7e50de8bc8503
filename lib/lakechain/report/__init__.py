"""``lakechain report``: one self-contained HTML page per task run.

``stage`` reads the run's figures from the ``runs`` table and its rows from ``results``
(aggregates in Spark, bounded rows to the driver), ``data`` shapes them into a compact dict,
and ``html`` renders that dict (Jinja template, inline CSS and JS, no network fetches).
"""
