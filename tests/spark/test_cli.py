"""The lakechain CLI: config errors at start, and SQL over the pipeline's tables."""

from __future__ import annotations

import json

from lakechain.cli import build_parser, main
from lakechain.sql import cell, format_table


def test_bad_config_fails_at_start_naming_the_key(capsys):
    assert main(["sql", "--config", "conf/local.yaml", "--set", "storage.rooot=x", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert "storage.rooot: unknown key" in err and "root" in err


def test_remote_endpoint_without_its_settings_fails_at_start(capsys):
    argv = ["run-tasks", "--config", "conf/local.yaml", "--set", "chat.provider=azure_openai"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "chat.base_url, chat.api_version, chat.deployment, chat.api_key" in err


def test_stage_errors_the_user_fixes_are_one_clear_line(tmp_path, capsys):
    argv = ["run-tasks", "--set", f"storage.root={tmp_path}", "--set", f"tasks.path={tmp_path}/none.jsonl",
            "--set", "storage.schema=cli_stage_errors"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lakechain: ") and "Traceback" not in err
    assert main(["ask", "--set", f"storage.root={tmp_path}", "What is Spark?"]) == 2
    err = capsys.readouterr().err
    assert "lakechain: " in err and "index" in err.lower()


def test_every_stage_has_a_subcommand():
    p = build_parser()
    for argv in (
        ["embed"],
        ["index", "--force"],
        ["run-tasks", "--retry-failed"],
        ["pipeline"],
        ["sql", "SELECT 1"],
        ["ask", "What?"],
    ):
        assert p.parse_args(argv).command == argv[0]


def test_sql_reads_tables_by_name(spark, tables, settings, capsys):
    df = spark.createDataFrame(
        [("t1", "Spark is fast.", b"\x89PNG\r\n\x1a\n" + b"0" * 10), ("t2", None, None)],
        "task_id string, answer string, image_png binary",
    )
    tables.write(df, "answers")
    root = [
        "--set",
        f"storage.root={settings.storage.root}",
        "--set",
        f"storage.schema={settings.storage.schema_}",
    ]
    rc = main(
        [
            "sql",
            "--config",
            "conf/local.yaml",
            *root,
            "SELECT task_id, answer, image_png FROM answers ORDER BY task_id",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "| task_id | answer" in out
    assert "Spark is fast." in out and "<png 18 bytes>" in out and "NULL" in out
    assert "(2 rows)" in out
    rc = main(["sql", *root, "--format", "json", "SELECT COUNT(*) AS n FROM answers"])
    assert json.loads(capsys.readouterr().out.strip()) == {"n": 2}


def test_table_formatting_is_single_line_and_bounded():
    assert cell("a\nb") == "a b"
    assert len(cell("x" * 500)) == 80
    assert cell([{"a": 1}]) == '[{"a": 1}]'
    text = format_table(["a", "b"], [{"a": 1, "b": "two"}])
    assert text.splitlines()[1] == "| a | b   |"
