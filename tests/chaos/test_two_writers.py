"""Two ``lakechain pipeline`` processes started at once on one storage root: the root's lock
runs them one after the other (or one fails with a one-line message and a non-zero exit),
and nothing is written twice."""

from __future__ import annotations

import pytest
from harness import Run, one_line_error
from invariants import assert_same_content, check_root, check_settled


@pytest.mark.timeout(900)
def test_two_pipelines_at_once_write_every_row_once(reference, chaos_inputs, tmp_path):
    root = tmp_path / "lake"
    runs = [Run(chaos_inputs.args(root)) for _ in range(2)]
    codes = [r.wait() for r in runs]
    print(f"\ntwo writers: exit codes {codes}, {[r.seconds for r in runs]} s")
    for run, rc in zip(runs, codes, strict=True):
        if rc != 0:
            print(f"refused: {one_line_error(run.text('err'))}")
    assert 0 in codes, [r.text("err")[-3000:] for r in runs]
    if codes == [0, 0]:
        # serial, not interleaved: whichever came second found every task already answered
        assert any("0 pending" in r.text("out") for r in runs), [r.text("out") for r in runs]
    rows = check_root(root)
    check_settled(root, rows)
    assert_same_content(rows, root, reference.rows, reference.root)
