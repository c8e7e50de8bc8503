"""CLI failures that need tables: one-line SQL errors, exit codes of runs that mostly
failed, the pipeline's own flag in its messages, and the documented ``ingest_errors`` query.

One small pipeline run (module-scoped) serves every test; ``main`` runs in-process on the
suite's Spark session, except the fresh-root check, which needs a process without the
temp views earlier tests registered.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lakechain.cli import main

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [  # each retrieves context, so each calls the chat model
    "What does MERGE INTO do in Delta Lake?",
    "What is the Delta Lake transaction log?",
    "What is LangChain?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _corpus(path: Path) -> Path:
    """Four sample documents: enough for the questions, small enough to embed in seconds."""
    path.mkdir(parents=True)
    sample = REPO / "data" / "corpus"
    for f in [*sorted((sample / "delta").glob("*.txt")), sample / "langchain.txt"]:
        (path / f.name).write_text(f.read_text())
    return path


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark):
    base = tmp_path_factory.mktemp("cli-failures")
    tasks = base / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"qa": {"question": q}}) + "\n" for q in QUESTIONS))
    args = [
        "--config",
        str(REPO / "conf" / "local.yaml"),
        "--set",
        f"storage.root={base / 'lake'}",
        "--set",
        f"corpus.path={_corpus(base / 'corpus')}",
        "--set",
        f"tasks.path={tasks}",
        "--set",
        "storage.schema=cli_failures",  # the suite's session has one metastore for every root
    ]
    assert main(["pipeline", *args]) == 0
    return base, args


def _last_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_pipeline_rerun_names_its_own_rebuild_flag(lake, capsys):
    _, args = lake
    assert main(["pipeline", *args]) == 0
    out = capsys.readouterr().out
    assert "index up to date, skipped" in out and "(use --rebuild-index to rebuild)" in out
    assert "--force to rebuild" not in out


def test_sql_syntax_error_is_one_line(lake, capsys):
    _, args = lake
    assert main(["sql", *args, "SELEC task_id FROM results"]) == 2
    line = _last_line(capsys.readouterr().err)
    assert line.startswith("lakechain: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'")


def test_sql_unknown_table_lists_the_tables_there(lake, capsys):
    base, args = lake
    assert main(["sql", *args, "SELECT * FROM answer"]) == 2
    line = _last_line(capsys.readouterr().err)
    assert line.startswith("lakechain: [TABLE_OR_VIEW_NOT_FOUND] The table or view `answer` cannot be found")
    listed = line.split(f"— tables in storage.root {base / 'lake'}: ")[1].split(", ")
    assert {"chunks", "documents", "ingest_errors", "results", "tasks", "qa_results", "image_results"} <= set(
        listed
    )


def test_documented_ingest_errors_query_runs_on_a_clean_corpus(lake, capsys):
    _, args = lake
    text = (REPO / "docs" / "sql.md").read_text()
    marker = r"<!-- sql \(empty on a clean corpus\): ingest_errors -->\s*```sql\n(.*?)```"
    (query,) = re.findall(marker, text, re.S)
    assert main(["sql", *args, query]) == 0
    assert "(0 rows)" in capsys.readouterr().out


def test_sql_on_a_fresh_root_says_to_run_the_pipeline(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakechain.cli",
            "sql",
            "--set",
            f"storage.root={tmp_path}",
            "--set",
            "storage.schema=cli_fresh_root",
            "SELECT * FROM results",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2
    assert _last_line(p.stderr).endswith(
        f"— storage.root {tmp_path} has no tables yet: run `lakechain pipeline` first"
    )


def test_run_tasks_where_every_task_failed_exits_1_and_keeps_the_rows(lake, capsys):
    _, args = lake
    down = [
        "--set",
        "chat.provider=openai_compatible",
        "--set",
        f"chat.base_url=http://127.0.0.1:{_free_port()}/v1",
        "--set",
        "chat.model=m",
        "--set",
        "chat.max_retries=0",
        "--set",
        "tasks.max_attempts=1",
    ]
    assert main(["run-tasks", *args, *down, "--force"]) == 1
    err = _last_line(capsys.readouterr().err)
    assert err.startswith("lakechain: run-tasks: 3 of 3 tasks failed, more than tasks.max_error_fraction=0.5")
    assert "FROM results WHERE run_id" in err and "`lakechain run-tasks --retry-failed`" in err
    query = "SELECT status, count(*) AS n FROM results GROUP BY status"
    assert main(["sql", *args, "--format", "json", query]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert rows == [{"status": "error", "n": 3}]  # committed, for --retry-failed to redo


def test_embed_where_every_batch_failed_exits_1_and_records_why(lake, tmp_path, capsys):
    base, _ = lake
    root = tmp_path / "lake"
    args = [
        "--set",
        f"storage.root={root}",
        "--set",
        "storage.schema=cli_every_batch_failed",
        "--set",
        f"corpus.path={base / 'corpus'}",
        "--set",
        "embedding.provider=openai_compatible",
        "--set",
        "embedding.model=m",
        "--set",
        f"embedding.base_url=http://127.0.0.1:{_free_port()}/v1",
        "--set",
        "embedding.max_retries=0",
    ]
    assert main(["embed", *args]) == 1
    err = _last_line(capsys.readouterr().err)
    every = r"lakechain: embed: (\d+) of \1 chunks failed, more than embedding\.max_error_fraction=0\.5"
    assert re.match(every, err)
    assert "FROM ingest_errors WHERE run_id" in err and "rerun `lakechain embed`" in err
    assert (
        main(
            [
                "sql",
                *args,
                "--format",
                "json",
                "SELECT stage, count(*) AS n FROM ingest_errors GROUP BY stage",
            ]
        )
        == 0
    )
    (row,) = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert row["stage"] == "embed" and row["n"] > 0
