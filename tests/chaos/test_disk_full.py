"""The storage root's disk fills up mid-run: the pipeline exits non-zero with one line that
says so, every table stays consistent, and once there is space a rerun completes to the
tables of an uninterrupted run.

The root lives on a tmpfs sized between the reference run's disk use when run-tasks started
and when it ended, so the disk fills during the last stage with embed and index committed.
Mounting needs root; as another user the test reruns itself as root of a user and mount
namespace of its own (``unshare -rm``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO, Run, one_line_error
from invariants import assert_same_content, check_root, check_settled, tables_of

IN_NAMESPACE = "LAKECHAIN_CHAOS_IN_NAMESPACE"


def mount_tmpfs(path: Path, size_kib: int, remount: bool = False) -> None:
    opts = f"{'remount,' if remount else ''}size={size_kib}k"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)


@pytest.mark.timeout(900)
def test_a_full_disk_fails_in_one_line_and_a_rerun_with_space_completes(
    reference, chaos_inputs, tmp_path, request
):
    if os.geteuid() != 0 and not os.environ.get(IN_NAMESPACE):
        pytest_again = [sys.executable, "-m", "pytest", request.node.nodeid, "-s", "-p", "no:cacheprovider"]
        proc = subprocess.run(
            ["unshare", "-rm", *pytest_again],
            cwd=REPO, env={**os.environ, IN_NAMESPACE: "1"}, capture_output=True, text=True, timeout=880,
        )  # fmt: skip
        print(proc.stdout[-3000:])
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return
    disk = tmp_path / "disk"
    disk.mkdir()
    used = reference.disk_kib
    size = (used["run-tasks"] + used["end"]) // 2
    mount_tmpfs(disk, size)
    try:
        root = disk / "lake"
        full = Run(chaos_inputs.args(root))
        rc = full.wait()
        print(f"\ndisk of {size} KiB: exit {rc} after {full.seconds}s in {full.stage()}")
        assert rc == 2, full.text("err")[-4000:]  # a problem the user fixes, not a crash
        message = one_line_error(full.text("err"))
        print(message)
        assert "no space left" in message.lower() and str(root) in message, message
        assert {"documents", "chunks"} <= set(tables_of(root)), "the disk must fill partway, not at start"
        check_root(root)

        mount_tmpfs(disk, 256 * 1024, remount=True)
        rerun = Run(chaos_inputs.args(root))
        assert rerun.wait() == 0, rerun.text("err")[-4000:]
        print(f"rerun with space: {rerun.seconds}s")
        rows = check_root(root)
        check_settled(root, rows)
        assert_same_content(rows, root, reference.rows, reference.root)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
