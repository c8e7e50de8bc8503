"""Run ids, one format for every stage: ``<stage>-<UTC yyyymmddThhmmss>-<8 hex>``.

Sortable by time, unique across concurrent runs, and readable in SQL (``WHERE run_id LIKE 'embed-%'``).
"""

from __future__ import annotations

import datetime as dt
import uuid


def new_run_id(stage: str) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return f"{stage}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
