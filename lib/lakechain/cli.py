"""``lakechain`` command line: one subcommand per stage, plus ``pipeline``, ``sql`` and ``ask``.

The ``jobs/*.py`` spark-submit / Databricks entry points call :func:`main` with their
subcommand, so every path shares this parser (the bundle tests parse job parameters with it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from lakechain.config import ConfigError, Settings, load_settings

DEFAULT_CONFIG = "conf/local.yaml"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=os.environ.get("LAKECHAIN_CONFIG"),
        help=f"YAML config (default: $LAKECHAIN_CONFIG, else {DEFAULT_CONFIG} if present)",
    )
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set storage.root=/tmp/out",
    )
    p = argparse.ArgumentParser(prog="lakechain", description="LLM reasoning over whole tables.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("embed", parents=[common], help="ingest corpus.path, chunk and embed into Delta")
    ix = sub.add_parser("index", parents=[common], help="build the FAISS index from the chunks table")
    ix.add_argument("--force", action="store_true", help="rebuild even if the index is up to date")
    rt = sub.add_parser("run-tasks", parents=[common], help="answer tasks.path through the chains")
    _task_flags(rt)
    pl = sub.add_parser("pipeline", parents=[common], help="embed → index → run-tasks")
    _task_flags(pl)
    pl.add_argument("--rebuild-index", action="store_true", help="force the index rebuild")
    sq = sub.add_parser("sql", parents=[common], help="run SQL over the pipeline's tables")
    sq.add_argument("query", help='e.g. "SELECT task_id, answer FROM results"')
    sq.add_argument("--limit", type=int, default=100, help="rows to print (default 100)")
    sq.add_argument("--format", choices=["table", "json"], default="table")
    ask = sub.add_parser("ask", parents=[common], help="answer one question against the current index")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the result as JSON")
    ev = sub.add_parser("eval", parents=[common], help="hit@k, MRR and answer metrics on a question set")
    ev.add_argument(
        "--questions",
        default="data/eval/questions.jsonl",
        help="jsonl file or table: id, question, expected_docs and/or key_phrase",
    )
    ev.add_argument("--modes", default=None, help="e.g. dense,keyword,hybrid (default: retrieval.mode)")
    ev.add_argument("--no-write", action="store_true", help="print only; do not append to eval_results")
    return p


def _task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retry-failed", action="store_true", help="redo tasks whose last result is an error")
    p.add_argument("--force", action="store_true", help="redo every task")


def settings_from_args(args: argparse.Namespace) -> Settings:
    path = args.config
    if path is None and os.path.isfile(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    return load_settings(path, args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("py4j", "httpx", "openai", "urllib3", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = settings_from_args(args)
        for section in ENDPOINTS_USED[args.command]:
            getattr(settings, section).check_remote(section)
    except ConfigError as exc:
        print(f"lakechain: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](settings, args)
    except USER_ERRORS as exc:
        # Problems the user fixes (inputs, missing tables or index, schema): their message
        # says how, so a traceback would only hide it.
        print(f"lakechain: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from lakechain.eval.metrics import EvalSetError
    from lakechain.index.errors import LakechainIndexError
    from lakechain.storage.delta_schema import SchemaMismatchError
    from lakechain.storage.tables import TableNotFoundError

    return (
        ConfigError,
        EvalSetError,
        LakechainIndexError,
        TableNotFoundError,
        SchemaMismatchError,
        FileNotFoundError,
    )


def _session(settings: Settings) -> tuple[Any, Any]:
    from lakechain.storage.session import get_spark
    from lakechain.storage.tables import Tables

    spark = get_spark(settings)
    return spark, Tables(spark, settings)


def cmd_embed(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.embed.stage import run_embed

    spark, tables = _session(settings)
    print(run_embed(spark, settings, tables))
    return 0


def cmd_index(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.index.stage import run_index

    spark, tables = _session(settings)
    print(run_index(spark, settings, tables, force=args.force))
    return 0


def cmd_run_tasks(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.tasks.stage import run_tasks

    spark, tables = _session(settings)
    print(run_tasks(spark, settings, tables, retry_failed=args.retry_failed, force=args.force))
    return 0


def cmd_pipeline(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.embed.stage import run_embed
    from lakechain.index.stage import run_index
    from lakechain.tasks.stage import run_tasks

    spark, tables = _session(settings)
    print(run_embed(spark, settings, tables))
    print(run_index(spark, settings, tables, force=args.rebuild_index))
    print(run_tasks(spark, settings, tables, retry_failed=args.retry_failed, force=args.force))
    return 0


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.sql import run_sql

    spark, tables = _session(settings)
    print(run_sql(spark, tables, args.query, limit=args.limit, fmt=args.format))
    return 0


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.chains import ask

    result = ask(settings, args.question)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(result["answer"])
    for i, src in enumerate(result.get("sources", []), 1):
        print(f"  [{i}] {src['doc_id']} ({src['score']:.3f}): {src.get('snippet', '')}")
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from lakechain.eval.run import parse_modes
    from lakechain.eval.stage import run_eval

    modes = parse_modes(args.modes or settings.retrieval.mode)
    spark, tables = _session(settings)
    print(run_eval(spark, settings, tables, args.questions, modes, write=not args.no_write))
    return 0


USER_ERRORS = _user_errors()

# Model endpoints each command calls: a remote one lacking its URL/key/deployment fails at
# start, not on an executor halfway through a run.
ENDPOINTS_USED = {
    "embed": ("embedding",),
    "index": (),
    "run-tasks": ("embedding", "chat", "images"),
    "pipeline": ("embedding", "chat", "images"),
    "sql": (),
    "ask": ("embedding", "chat"),
    "eval": ("embedding", "chat"),
}

COMMANDS = {
    "embed": cmd_embed,
    "index": cmd_index,
    "run-tasks": cmd_run_tasks,
    "pipeline": cmd_pipeline,
    "sql": cmd_sql,
    "ask": cmd_ask,
    "eval": cmd_eval,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
