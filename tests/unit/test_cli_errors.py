"""CLI failures a user causes read as one line (exit 2), before Spark starts where possible.

Each CLI check runs ``lakechain`` in a fresh interpreter that reports, after ``main``,
whether pyspark was imported: "before Spark" is then a fact, not a timing.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

from lakechain import cli
from lakechain.errors import (
    SchemaMismatchError,
    StorageBusyError,
    StorageRootError,
    TableNotFoundError,
    is_user_error,
)
from lakechain.index.stage import IndexReport
from lakechain.tasks.report import RunReport

REPO = Path(__file__).resolve().parents[2]
_RUNNER = (
    "import sys\n"
    "from lakechain.cli import main\n"
    "try:\n"
    "    rc = main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    rc = exc.code\n"
    "print('PYSPARK ' + str('pyspark' in sys.modules), file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def lakechain(*argv: str, cwd: Path = REPO) -> tuple[int, str, bool]:
    """(exit code, stderr without the marker line, whether pyspark was imported)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [sys.executable, "-c", _RUNNER, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    lines = p.stderr.splitlines()
    assert lines and lines[-1].startswith("PYSPARK "), p.stderr
    # library log lines (faiss loader...) are not ours; keep only lakechain's and tracebacks
    err = [ln for ln in lines[:-1] if " INFO " not in ln and "swigfaiss" not in ln]
    return p.returncode, "\n".join(err), lines[-1] == "PYSPARK True"


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lakechain: "), err
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_imports_no_pyspark():
    rc, _, spark = lakechain("--help")
    assert rc == 0 and not spark


def test_ask_parses_and_imports_its_chains_without_pyspark():
    code = "import sys, lakechain.cli, lakechain.chains; print('pyspark' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_storage_root_that_is_a_file_fails_before_spark(tmp_path):
    root = tmp_path / "lake"
    root.write_text("not a directory")
    rc, err, spark = lakechain("embed", "--set", f"storage.root={root}")
    assert (rc, spark) == (2, False)
    assert _one_line(err) == (
        f"lakechain: storage.root {root} is a file, not a directory: point storage.root at a directory"
    )


def test_storage_root_below_a_file_fails_before_spark(tmp_path):
    (tmp_path / "file").write_text("x")
    rc, err, spark = lakechain("run-tasks", "--set", f"storage.root={tmp_path}/file/lake")
    assert (rc, spark) == (2, False)
    assert "is not a writable directory (Not a directory)" in _one_line(err)


def test_read_only_storage_root_is_refused():
    """chmod does not stop root, so the check runs in a child that drops to nobody."""
    import tempfile

    ro = Path(tempfile.mkdtemp(prefix="lakechain-ro-"))
    try:
        ro.chmod(0o555)
        settings = cli.load_settings(None, [f"storage.root={ro}"])
        pid = os.fork()
        if pid == 0:  # child: report the outcome through the exit status only
            code = 3
            try:
                if os.geteuid() == 0:
                    os.setuid(65534)
                cli.check_storage_root(settings, write=True)
                code = 0
            except StorageRootError as exc:
                code = 1 if "is not a writable directory (Permission denied)" in str(exc) else 4
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 1
        cli.check_storage_root(settings, write=False)  # reading commands do not need to write
    finally:
        ro.chmod(0o755)
        ro.rmdir()


def test_unsupported_local_embedding_model_fails_before_spark(tmp_path):
    rc, err, spark = lakechain(
        "embed", "--set", f"storage.root={tmp_path}", "--set", "embedding.model=all-mpnet-base-v2"
    )
    assert (rc, spark) == (2, False)
    line = _one_line(err)
    assert (
        "embedding.model 'all-mpnet-base-v2': provider 'local' runs only the packaged all-MiniLM-L6-v2"
        in line
    )
    assert "(set embedding.model: all-MiniLM-L6-v2, or use a remote provider)" in line


def test_unreachable_endpoint_in_ask_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    rc, err, spark = lakechain(
        "ask",
        "--set",
        f"storage.root={tmp_path}",
        "--set",
        "embedding.provider=openai_compatible",
        "--set",
        f"embedding.base_url={url}",
        "--set",
        "embedding.max_retries=0",
        "What is Spark?",
    )
    assert (rc, spark) == (2, False)
    line = _one_line(err)
    assert f"connection error calling {url}/embeddings" in line and "check embedding.base_url" in line


def test_debug_shows_the_traceback(tmp_path):
    root = tmp_path / "lake"
    root.write_text("x")
    rc, err, _ = lakechain("embed", "--debug", "--set", f"storage.root={root}")
    assert rc == 2
    assert "Traceback (most recent call last)" in err and "StorageRootError" in err
    assert err.splitlines()[-1].startswith("lakechain: storage.root")


def test_interrupt_before_spark_says_nothing_was_committed(monkeypatch, capsys, tmp_path):
    def interrupted(settings, args, ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "embed", interrupted)
    assert cli.main(["embed", "--set", f"storage.root={tmp_path}"]) == 130
    assert capsys.readouterr().err.strip() == (
        "lakechain: interrupted: nothing was committed (Spark had not started). "
        f"Resume with `lakechain embed --set storage.root={tmp_path}` (finished work is not redone)"
    )


class _History:
    """The two ``Tables`` methods the interrupt report reads, over fixed commit histories."""

    def __init__(self, histories: dict[str, list[dict]]) -> None:
        self.histories = histories

    def exists(self, name: str) -> bool:
        return name in self.histories

    def history(self, name: str) -> list[dict]:
        return self.histories[name]


def test_interrupt_report_lists_only_this_runs_commits():
    started = 1_700_000_000.0
    after = dt.datetime.fromtimestamp(started + 5)  # native Delta: datetimes
    tables = _History(
        {
            "tasks": [{"version": 3, "timestamp": int((started - 60) * 1000)}],  # delta-rs: epoch ms
            "results": [
                {"version": 9, "timestamp": int((started + 9) * 1000)},
                {"version": 8, "timestamp": after},
                {"version": 7, "timestamp": int((started - 1) * 1000)},
            ],
        }
    )
    ctx = cli.Context(["run-tasks", "--retry-failed"], started=started, tables=tables)
    assert cli.interrupted_message("run-tasks", ctx) == (
        "interrupted: committed results (2 commits, now v9). "
        "Resume with `lakechain run-tasks --retry-failed` (finished work is not redone)"
    )


def _task_report(ok: int, error: int) -> RunReport:
    return RunReport(run_id="r1", source="tasks.jsonl", ok=ok, error=error)


def test_run_tasks_failing_above_the_fraction_explains_where_to_look():
    settings = cli.load_settings(None)
    assert cli.task_failures(_task_report(ok=5, error=5), settings) is None  # 0.5 is not more than 0.5
    assert cli.task_failures(_task_report(ok=0, error=0), settings) is None  # nothing ran
    msg = cli.task_failures(_task_report(ok=0, error=13), settings)
    assert msg == (
        "run-tasks: 13 of 13 tasks failed, more than tasks.max_error_fraction=0.5; the 0 ok results are "
        "committed. Reasons: lakechain sql \"SELECT task_id, error FROM results WHERE run_id = 'r1'\"; "
        "fix the cause, then `lakechain run-tasks --retry-failed`"
    )


def test_embed_failing_above_the_fraction_explains_where_to_look():
    from lakechain.embed.stage import EmbedReport

    strict = cli.load_settings(None, ["embedding.max_error_fraction=0.1"])
    report = EmbedReport(run_id="e1", model="m", chunks_embedded=8, chunk_errors=2)
    assert cli.embed_failures(report, cli.load_settings(None)) is None
    msg = cli.embed_failures(report, strict)
    assert msg is not None
    assert msg.startswith("embed: 2 of 10 chunks failed, more than embedding.max_error_fraction=0.1;")
    assert "FROM ingest_errors WHERE run_id = 'e1'" in msg and "rerun `lakechain embed`" in msg


def test_skipped_index_names_the_flag_of_the_command_that_ran_it():
    report = IndexReport(
        skipped=True,
        kind="flat",
        description="flat",
        count=3,
        dim=4,
        model="m",
        shards=1,
        table_version=2,
        path="/x/index",
        seconds=0.1,
    )
    assert report.summary(rebuild_flag="--rebuild-index").endswith("(use --rebuild-index to rebuild)")
    assert str(report).endswith("(use --force to rebuild)")  # `lakechain index --force`


def test_storage_layer_errors_are_user_errors_and_bugs_are_not():
    for cls in (SchemaMismatchError, StorageBusyError, TableNotFoundError, StorageRootError):
        assert is_user_error(cls("x"))
    assert not is_user_error(RuntimeError("a bug")) and not is_user_error(KeyError("k"))
