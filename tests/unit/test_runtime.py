"""The one progress printer, timer, run-id format and per-process cache."""

from __future__ import annotations

import io
import re
import threading

from lakechain.runtime import cache
from lakechain.runtime.ids import new_run_id
from lakechain.runtime.progress import Progress, format_duration, format_progress
from lakechain.runtime.timer import Timer


def test_progress_line_has_rate_and_eta():
    assert format_progress("embed", 50, 200, 10.0) == "embed: 50/200 (25.0%) 5.0/s elapsed 10s ETA 30s"
    assert format_progress("embed", 0, 200, 3.0).endswith("ETA ?")
    assert format_duration(3725) == "1h02m05s"


def test_progress_prints_one_line_per_update():
    now = [0.0]
    out = io.StringIO()
    p = Progress("run-tasks", 100, stream=out, clock=lambda: now[0])
    now[0] = 10.0
    p.update(40, "40 ok")
    now[0] = 20.0
    line = p.update(60)
    assert out.getvalue().splitlines()[0].endswith("ETA 15s, 40 ok")
    assert line.startswith("run-tasks: 100/100 (100.0%) 5.0/s") and line.endswith("ETA 0s")


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    Progress("x", 5, stream=out, enabled=False).update(5)
    assert out.getvalue() == ""


def test_timer_adds_up_repeated_steps():
    t = Timer()
    for _ in range(2):
        with t.step("a"):
            pass
    assert set(t.steps) == {"a"} and t.steps["a"] >= 0 and t.elapsed >= t.steps["a"]


def test_run_ids_name_the_stage_and_sort_by_time():
    rid = new_run_id("embed")
    assert re.fullmatch(r"embed-\d{8}T\d{6}-[0-9a-f]{8}", rid)
    assert new_run_id("embed") != rid


def test_per_process_cache_builds_once_across_threads():
    cache.clear("t")
    built = []

    def build():
        built.append(1)
        return object()

    got = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.per_process("t", "k", build))) for _ in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(built) == 1 and len({id(g) for g in got}) == 1
    cache.clear("t")
    assert cache.per_process("t", "k", build) is not got[0]
