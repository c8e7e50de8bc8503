"""SIGKILL ``lakechain pipeline`` (its whole process group) at ten seeded random moments across
embed, index and run-tasks, rerunning after each: every kill leaves consistent tables, and
the chain ends with exactly the tables of an uninterrupted run.

The seed is printed; rerun one chain with ``LAKECHAIN_CHAOS_SEED=<seed> pytest tests/chaos -s``.
"""

from __future__ import annotations

import os
import random

import pytest
from harness import STAGES, Run, draw_kills, run_and_kill
from invariants import assert_same_content, check_root, check_settled

SEED = int(os.environ.get("LAKECHAIN_CHAOS_SEED", "20261130"))


@pytest.mark.timeout(2400)
def test_ten_sigkills_then_a_rerun_end_with_the_uninterrupted_tables(reference, chaos_inputs, tmp_path):
    root = tmp_path / "lake"
    args = chaos_inputs.args(root)
    kills = draw_kills(random.Random(SEED), reference.timeline, n=10)
    print(f"\nchaos seed {SEED}; kills (stage + seconds into it): "
          + ", ".join(f"{k.stage}+{k.after_s}s" for k in kills))  # fmt: skip
    landed = []
    for i, kill in enumerate(kills, 1):
        run, stage = run_and_kill(args, kill)
        assert stage != "exited" or run.proc.returncode == 0, run.text("err")[-4000:]
        landed.append(stage)
        print(f"kill {i}: aimed {kill.stage}+{kill.after_s}s, killed in {stage} at {run.seconds}s")
        check_root(root)
    assert set(STAGES) <= set(landed), f"kills landed in {landed}: some stage was never interrupted"
    final = Run(args)
    assert final.wait() == 0, final.text("err")[-4000:]
    print(f"final rerun: {final.seconds}s")
    rows = check_root(root)
    check_settled(root, rows)
    assert_same_content(rows, root, reference.rows, reference.root)
