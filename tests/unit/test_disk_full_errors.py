"""A full disk is the machine's failure, not a task's: it fails the run in one line (exit 2)
and leaves nothing committed as if the task had failed (found by ``tests/chaos``)."""

from __future__ import annotations

import errno
import os

import pytest
from test_tasks_execute import FakeServices, cfg

from lakechain import cli
from lakechain.errors import disk_full
from lakechain.tasks.execute import TaskInput, run_partition
from lakechain.tasks.worker import save_png

JVM_ERROR = (
    "An error occurred while calling o123.save.\n: org.apache.spark.SparkException: Job aborted.\n"
    "Caused by: java.io.IOException: No space left on device\n\tat java.base/java.io.FileOutputStream"
)


def test_a_full_disk_is_recognised_in_python_and_in_spark_errors():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(RuntimeError(JVM_ERROR))
    wrapped = ValueError("stage failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert disk_full(wrapped)
    assert not disk_full(OSError(errno.EACCES, "Permission denied")) and not disk_full(KeyError("k"))


def test_an_image_write_on_a_full_disk_fails_the_partition_instead_of_the_task():
    def full(task_id: str, png: bytes) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        run_partition([TaskInput("i", None, "a lake", False)], FakeServices(), cfg(save_image=full))


def test_an_image_write_denied_stays_that_tasks_error():
    def denied(task_id: str, png: bytes) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    (out,) = run_partition(
        [TaskInput("i", None, "a lake", False)], FakeServices(), cfg(save_image=denied)
    ).outcomes
    assert out.image_status == "error" and "Permission denied" in (out.image_error or "")


def test_a_failed_png_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        save_png(str(tmp_path), "t1", b"\x89PNG")
    assert os.listdir(tmp_path) == []


def test_the_cli_reports_a_full_disk_in_one_line_with_the_resume_command(tmp_path, monkeypatch, capsys):
    def fails(settings, args, ctx):
        raise RuntimeError(JVM_ERROR)

    monkeypatch.setitem(cli.COMMANDS, "index", fails)
    argv = ["index", "--config", "conf/local.yaml", "--set", f"storage.root={tmp_path}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"lakechain: no space left on device (storage.root {tmp_path}")
    assert "Resume with `lakechain index --config conf/local.yaml" in err and "\n" not in err
