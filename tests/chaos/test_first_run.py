"""SIGKILL a first ``lakechain pipeline`` on a fresh root at ten seeded moments of its first
30 s (JVM start, catalog creation, the catalog's schema, the first table), each on a root of
its own, then run it again: every rerun succeeds (repairing a half-made catalog with one
line) and ends with the tables of an uninterrupted run.

Kill moments are "event + seconds", the events read from the root's files, so the two
scenarios run side by side (on a loaded machine every event only comes later). Replay with
``LAKECHAIN_CHAOS_SEED=<seed> pytest tests/chaos/test_first_run.py -s``.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import Run, draw_first_run_kills, run_and_kill_at
from invariants import assert_same_content, check_root, check_settled

SEED = int(os.environ.get("LAKECHAIN_CHAOS_SEED", "20261207"))

REPAIRED = "was left half-made by an interrupted run"


@pytest.mark.timeout(2400)
def test_kills_in_the_first_30_s_of_a_first_run_leave_a_root_the_rerun_completes(
    reference, chaos_inputs, tmp_path
):
    kills = draw_first_run_kills(random.Random(SEED), reference.events, n=10, within_s=30.0)
    print(f"\nfirst-run chaos seed {SEED}; reference events (s) {reference.events}; kills: "
          + ", ".join(f"{k.event}+{k.after_s}s" for k in kills))  # fmt: skip

    def scenario(i: int) -> tuple[Run, str, Run]:
        # The reference's own settings: its commit batches decide the chunks' files, hence the
        # index build's checksum that results rows record.
        args = chaos_inputs.args(tmp_path / f"lake{i}")
        killed, made = run_and_kill_at(args, tmp_path / f"lake{i}", kills[i])
        rerun = Run(args)
        rerun.wait()
        return killed, made, rerun

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(scenario, range(len(kills))))
    half_made = 0
    for i, (kill, (killed, made, rerun)) in enumerate(zip(kills, outcomes, strict=True)):
        repaired = [ln for ln in rerun.text("err").splitlines() if REPAIRED in ln]
        found = f"repaired: {repaired[0].split(': ', 1)[-1]}" if repaired else "found nothing to repair"
        print(f"kill {i + 1}: aimed {kill.event}+{kill.after_s}s, killed at {killed.seconds}s having made "
              f"[{made}]; rerun exit {rerun.proc.returncode} in {rerun.seconds}s, {found}")  # fmt: skip
        assert rerun.proc.returncode == 0, rerun.text("err")[-4000:]
        if made.endswith("catalog"):  # Derby's directory, not yet whole
            half_made += 1
            assert len(repaired) == 1, rerun.text("err")[-4000:]
        root = tmp_path / f"lake{i}"
        rows = check_root(root)
        check_settled(root, rows)
        assert_same_content(rows, root, reference.rows, reference.root)
    assert half_made >= 1, "no kill landed while Derby created the catalog"
