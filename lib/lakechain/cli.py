"""``lakechain`` command line: one subcommand per stage, plus ``pipeline``, ``sql``, ``ask`` and ``server``.

The ``jobs/*.py`` spark-submit / Databricks entry points call :func:`main` with their
subcommand, so every path shares this parser (the bundle tests parse job parameters with it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lakechain.config import Settings, load_settings
from lakechain.errors import (
    ConfigError,
    DiskFullError,
    EndpointError,
    StorageRootError,
    UserError,
    disk_full,
    is_user_error,
)

DEFAULT_CONFIG = "conf/local.yaml"


def _common_flags() -> argparse.ArgumentParser:
    """``--config``, ``--set`` and ``--debug``: the parent parser of every command."""
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
    common.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_flags()
    p = argparse.ArgumentParser(prog="lakechain", description="LLM reasoning over whole tables.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("embed", parents=[common], help="ingest corpus.path, chunk and embed into Delta")
    ix = sub.add_parser("index", parents=[common], help="build the FAISS index from the chunks table")
    ix.add_argument("--force", action="store_true", help="rebuild even if the index is up to date")
    rt = sub.add_parser("run-tasks", parents=[common], help="answer tasks.path through the chains")
    _task_flags(rt)
    rt.add_argument(
        "--estimate", action="store_true",
        help="run a pilot of tasks.estimate_pilot tasks (kept), print the projected tokens, cost "
        "and wall time of the rest, write them to run_estimates, and stop",
    )  # fmt: skip
    pl = sub.add_parser("pipeline", parents=[common], help="embed → index → run-tasks")
    _task_flags(pl)
    pl.add_argument("--rebuild-index", action="store_true", help="force the index rebuild")
    pl.add_argument("--no-report", action="store_true", help="do not write the HTML run report")
    rp = sub.add_parser("report", parents=[common], help="write a task run's HTML report")
    rp.add_argument("--run-id", default=None, help="the run to report on (default: the latest)")
    rp.add_argument("--out", default=None, help="HTML file (default: <storage root>/reports/<run id>.html)")
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
    ev.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="[MODE:]METRIC=MIN",
        help="exit non-zero when a metric is below MIN, e.g. hit@1=0.95 (mode: retrieval.mode)",
    )
    srv = sub.add_parser("server", parents=[common], help="a warm Spark Connect server for storage.root")
    srv.add_argument("action", choices=["start", "stop", "status"])
    srv.add_argument("--port", type=int, default=None, help="start: port on localhost (default 15051)")
    srv.add_argument("--timeout", type=float, default=300.0, help="start/stop: seconds to wait (default 300)")
    ca = sub.add_parser("cache", help="the response cache (llm_cache table): stats, clear")
    actions = ca.add_subparsers(dest="action", required=True)
    actions.add_parser("stats", parents=[common], help="entries, bytes, models; hits recorded in results")
    cl = actions.add_parser("clear", parents=[common], help="delete cached replies (all, or one model's)")
    cl.add_argument("--model", default=None, help="only the entries of this model (chat.model or deployment)")
    return p


def _task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retry-failed", action="store_true", help="redo tasks whose last result is an error")
    p.add_argument("--force", action="store_true", help="redo every task")


def settings_from_args(args: argparse.Namespace) -> Settings:
    path = args.config
    if path is None and os.path.isfile(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    return load_settings(path, args.overrides)


@dataclass
class Context:
    """What a command leaves for :func:`main` to report when it is interrupted."""

    argv: list[str]
    started: float = field(default_factory=time.time)
    tables: Any = None
    """The command's ``Tables`` once Spark is up (None: nothing can have been committed)."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("py4j", "httpx", "openai", "urllib3", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx = Context(argv)
    settings: Settings | None = None
    try:
        settings = settings_from_args(args)
        check_at_start(settings, args.command)
        return COMMANDS[args.command](settings, args, ctx)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print(f"lakechain: {interrupted_message(args.command, ctx)}", file=sys.stderr)
        return 130
    except Exception as exc:
        # Problems the user fixes (config, inputs, missing tables or index, a query): their
        # message says how, so a traceback would only hide it.
        if disk_full(exc):
            exc = DiskFullError(disk_full_message(args.command, ctx, settings))
        if not is_user_error(exc):
            raise
        if args.debug:
            traceback.print_exc()
        print(f"lakechain: {exc}", file=sys.stderr)
        return 2


def check_at_start(settings: Settings, command: str) -> None:
    """Everything that can be checked before Spark starts (seconds, not a failed stage)."""
    for section in ENDPOINTS_USED[command]:
        getattr(settings, section).check_remote(section)
    if "embedding" in ENDPOINTS_USED[command]:
        from lakechain.embed.embedders import check_model

        check_model(settings.embedding)
    check_storage_root(settings, write=command in WRITING_COMMANDS)
    check_inputs(settings, command)


def check_inputs(settings: Settings, command: str) -> None:
    """A local input path that is not there fails before Spark starts: a pipeline would
    otherwise embed and index for minutes before run-tasks finds no tasks file. Bare names
    (tables) and URIs are left to the stage, which reads them through Spark."""
    for section in INPUTS_READ.get(command, ()):
        path = getattr(settings, section).path
        key = f"{section}.path"
        if not os.path.isabs(path):
            continue
        if section == "corpus" and os.path.isfile(path):
            raise ConfigError(
                f"{key} {path} is a file: point {key} at the folder holding it "
                "(a corpus is a folder of .txt/.md/.html/.jsonl files, or a table)"
            )
        if not os.path.exists(path):
            what = (
                "a folder of .txt/.md/.html/.jsonl files"
                if section == "corpus"
                else "a .jsonl file or a folder of them"
            )
            raise ConfigError(
                f"{key} {path}: no such file or directory; point {key} at {what}, or give a table name"
            )


def check_storage_root(settings: Settings, write: bool) -> None:
    """``storage.root`` (and ``storage.volume``) must be directories, writable for a command
    that writes. Only plain local paths are checked: URIs and catalog tables are Spark's."""
    st = settings.storage
    keys = {"storage.volume": st.volume}
    if not st.uses_catalog:
        keys["storage.root"] = st.root
    for key, path in keys.items():
        if not path or not os.path.isabs(path):  # unset, or a URI such as dbfs:/ or abfss://
            continue
        if os.path.exists(path) and not os.path.isdir(path):
            raise StorageRootError(f"{key} {path} is a file, not a directory: point {key} at a directory")
        if not write:
            continue
        probe = os.path.join(path, f".lakechain-write-check-{os.getpid()}")
        try:
            os.makedirs(path, exist_ok=True)
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as exc:
            raise StorageRootError(
                f"{key} {path} is not a writable directory ({exc.strerror or exc}): point {key} at one"
            ) from exc


# The tables each command commits to, for the report of an interrupted run.
COMMITTED_TABLES = {
    "embed": ("documents", "chunks", "ingest_errors"),
    "index": ("ingest_errors",),
    "run-tasks": ("tasks", "results", "runs"),
    "pipeline": ("documents", "chunks", "ingest_errors", "tasks", "results", "runs"),
    "eval": ("eval_results",),
}


def interrupted_message(command: str, ctx: Context) -> str:
    """What an interrupted run committed, and the command that resumes it. Every commit is
    atomic, so the tables hold exactly the listed commits and a rerun redoes only the rest."""
    resume = "lakechain " + shlex.join(ctx.argv)
    if command not in COMMITTED_TABLES:
        return f"interrupted; `lakechain {command}` writes nothing, so nothing changed"
    if ctx.tables is None:
        done = "nothing was committed (Spark had not started)"
    else:
        try:
            done = committed_since(ctx.tables, COMMITTED_TABLES[command], ctx.started)
        except Exception as exc:  # the session may be half torn down by the interrupt
            done = f"could not read the tables' history ({type(exc).__name__}); every commit is atomic"
    if command in ("index", "pipeline"):
        done += "; an unfinished index build never replaces the current index"
    return f"interrupted: {done}. Resume with `{resume}` (finished work is not redone)"


def disk_full_message(command: str, ctx: Context, settings: Settings | None) -> str:
    """A full disk stops the run like an interrupt: what was committed, and how to resume."""
    where = f"storage.root {settings.storage.root}" if settings else "the storage root"
    _, _, rest = interrupted_message(command, ctx).partition(": ")
    return f"no space left on device ({where}, or Spark's scratch space spark.local.dir): free space; {rest}"


def committed_since(tables: Any, names: Sequence[str], started: float) -> str:
    """``"committed chunks (2 commits, now v5)"`` for the tables this run changed."""
    parts = []
    for name in names:
        if not tables.exists(name):
            continue
        commits = [h for h in tables.history(name) if _epoch(h["timestamp"]) >= started]
        if commits:
            n = len(commits)
            parts.append(f"{name} ({n} commit{'s' if n > 1 else ''}, now v{commits[0]['version']})")
    return "committed " + ", ".join(parts) if parts else "nothing was committed"


def _epoch(ts: Any) -> float:
    """Commit time in seconds: delta-rs gives epoch milliseconds, Spark a datetime."""
    return ts / 1000.0 if isinstance(ts, (int, float)) else float(ts.timestamp())


def _session(settings: Settings, ctx: Context, reader: bool = False) -> tuple[Any, Any]:
    """The command's Spark session and tables. A ``reader`` never waits for a writer on the
    root: a session of its own that reads the tables by path (``storage.session``), unless a
    catalog is there anyway (the root's server, Databricks, an active session)."""
    from lakechain.storage.session import get_spark
    from lakechain.storage.tables import Tables

    spark = get_spark(settings, reader=reader)
    by_path = reader and spark.conf.get("spark.sql.catalogImplementation", "") == "in-memory"
    ctx.tables = Tables(spark, settings, by_path=by_path)
    return spark, ctx.tables


_READ_ONLY_SQL = re.compile(
    r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*(select|with|show|describe|desc|explain|values|table|from)\b",
    re.IGNORECASE | re.DOTALL,
)


def read_only_sql(query: str) -> bool:
    """A statement that only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN ...): run as a
    reader. Anything else (DELETE, CREATE VIEW ...) runs as a writer, holding the root."""
    return _READ_ONLY_SQL.match(query) is not None


def embed_failures(report: Any, settings: Settings) -> str | None:
    """Why this embed run failed (too large a share of the chunks it embedded), or None."""
    attempted = report.chunks_embedded + report.chunk_errors
    limit = settings.embedding.max_error_fraction
    if not attempted or report.chunk_errors / attempted <= limit:
        return None
    return (
        f"embed: {report.chunk_errors} of {attempted} chunks failed, more than "
        f"embedding.max_error_fraction={limit:g}; the {report.chunks_embedded} embedded are committed. "
        "Reasons: lakechain sql "
        f"\"SELECT stage, reason FROM ingest_errors WHERE run_id = '{report.run_id}'\"; "
        "fix the cause, then rerun `lakechain embed` (failed chunks are retried)"
    )


def task_failures(report: Any, settings: Settings) -> str | None:
    """Why this run-tasks run failed (too large a share of the tasks it ran), or None."""
    limit = settings.tasks.max_error_fraction
    if not report.processed or report.error / report.processed <= limit:
        return None
    return (
        f"run-tasks: {report.error} of {report.processed} tasks failed, more than "
        f"tasks.max_error_fraction={limit:g}; the {report.ok} ok results are committed. "
        f"Reasons: lakechain sql \"SELECT task_id, error FROM results WHERE run_id = '{report.run_id}'\"; "
        "fix the cause, then `lakechain run-tasks --retry-failed`"
    )


def budget_stopped(report: Any) -> str | None:
    """The budget's one line when it stopped the run (exit 1: the input is not finished)."""
    return f"run-tasks: {report.budget_stop}" if report.budget_stop else None


def _verdict(*failures: str | None) -> int:
    """Exit 1 (a red scheduled job) when a stage failed too often; its rows stay committed."""
    shown = [f for f in failures if f]
    for f in shown:
        print(f"lakechain: {f}", file=sys.stderr)
    return 1 if shown else 0


def cmd_embed(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.embed.stage import run_embed

    spark, tables = _session(settings, ctx)
    report = run_embed(spark, settings, tables)
    print(report)
    return _verdict(embed_failures(report, settings))


def cmd_index(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.index.stage import run_index

    spark, tables = _session(settings, ctx)
    print(run_index(spark, settings, tables, force=args.force).summary(rebuild_flag="--force"))
    return 0


def cmd_run_tasks(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.tasks.stage import run_tasks

    spark, tables = _session(settings, ctx)
    estimate = bool(getattr(args, "estimate", False))
    report = run_tasks(
        spark, settings, tables, retry_failed=args.retry_failed, force=args.force, estimate=estimate
    )
    print(report)
    _record_run(tables, "run-tasks", report, {"run-tasks": report.wall_s})
    if estimate:
        from lakechain.tasks.estimate import Estimate

        print(Estimate(**report.estimate) if report.estimate else "estimate: no pending tasks")
        return 0
    return _verdict(task_failures(report, settings), budget_stopped(report))


def _record_run(
    tables: Any, command: str, report: Any, stage_seconds: dict[str, float]
) -> dict[str, Any] | None:
    """Append the run's row to ``runs`` (what ``lakechain report`` shows) and return it; an
    empty input ran nothing."""
    from lakechain.report.stage import record_run

    return record_run(tables, command, report, stage_seconds) if report.tasks_total else None


def cmd_pipeline(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.embed.stage import run_embed
    from lakechain.index.stage import run_index
    from lakechain.tasks.stage import run_tasks

    spark, tables = _session(settings, ctx)
    embedded = run_embed(spark, settings, tables)
    print(embedded)
    index = run_index(spark, settings, tables, force=args.rebuild_index)
    print(index.summary(rebuild_flag="--rebuild-index"))
    report = run_tasks(spark, settings, tables, retry_failed=args.retry_failed, force=args.force)
    print(report)
    stages = {"embed": embedded.seconds, "index": index.seconds, "run-tasks": report.wall_s}
    run = _record_run(tables, "pipeline", report, stages)
    if run is not None and not args.no_report:
        print(f"report: {_pipeline_report(tables, run)}")
    return _verdict(
        embed_failures(embedded, settings), task_failures(report, settings), budget_stopped(report)
    )


def _pipeline_report(tables: Any, run: dict[str, Any]) -> str:
    """The report's path, or why it was not written: the run's rows are committed by now and
    the report only renders them, so failing to write it must not fail the run."""
    from lakechain.report.stage import write_report

    run_id = run["run_id"]
    try:
        return str(write_report(tables, run_id, run=run))
    except Exception as exc:  # noqa: BLE001 - any rendering or I/O failure, reported in one line
        return f"not written ({type(exc).__name__}: {exc}); retry with `lakechain report --run-id {run_id}`"


def cmd_report(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.report.stage import write_report

    spark, tables = _session(settings, ctx, reader=True)
    print(write_report(tables, args.run_id, args.out))
    return 0


def cmd_sql(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.sql import run_sql

    spark, tables = _session(settings, ctx, reader=read_only_sql(args.query))
    print(run_sql(spark, tables, args.query, limit=args.limit, fmt=args.format))
    return 0


def cmd_ask(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.chains import ask
    from lakechain.chains.chat_models import chat_server
    from lakechain.chains.errors import classify

    if not args.question.strip():  # before a model server starts or an index loads
        raise UserError('the question is empty: ask one, e.g. lakechain ask "What is Delta Lake?"')
    try:
        with chat_server(settings.chat):
            result = ask(settings, args.question)
    except Exception as exc:
        info = classify(exc)
        if info.kind not in ("connection", "timeout", "auth", "not_found"):
            raise
        url = endpoint_url(exc, settings)
        used = [s for s in ENDPOINTS_USED["ask"] if (getattr(settings, s).base_url or "\0") in url]
        keys = " / ".join(f"{s}.base_url" for s in used or ENDPOINTS_USED["ask"])
        raise EndpointError(
            f"{info.kind.replace('_', ' ')} error calling {url}: {info.message} "
            f"(check {keys}, the api_key and the network)"
        ) from exc
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    from lakechain.index import store

    manifest = store.current_manifest(store.index_root(os.path.abspath(settings.storage.files_root)))
    warning = store.staleness(
        manifest, store.delta_log_version(((manifest or {}).get("source") or {}).get("path"))
    )
    if warning:
        print(f"lakechain: warning: {warning}", file=sys.stderr)
    print(result["answer"])
    for i, src in enumerate(result.get("sources", []), 1):
        print(f"  [{i}] {src['doc_id']} ({src['score']:.3f}): {src.get('snippet', '')}")
    return 0


def endpoint_url(exc: BaseException, settings: Settings) -> str:
    """The URL the failed request went to (openai and httpx errors carry it), else the
    configured remote endpoints."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        url = getattr(getattr(e, "request", None), "url", None)
        if url is not None:
            return str(url)
        e = e.__cause__ or e.__context__
    remote = [
        f"{s} {getattr(settings, s).base_url or 'the ' + getattr(settings, s).provider + ' default URL'}"
        for s in ENDPOINTS_USED["ask"]
        if getattr(settings, s).provider != "local"
    ]
    return ", ".join(remote) or "the model endpoint"


# Inputs each command reads (``<section>.path``), checked to exist at start when local.
INPUTS_READ = {"embed": ("corpus",), "run-tasks": ("tasks",), "pipeline": ("corpus", "tasks")}

# Commands that write to storage.root (checked writable at start).
WRITING_COMMANDS = frozenset({"embed", "index", "run-tasks", "pipeline", "eval", "cache"})


def cmd_eval(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.eval.metrics import GateFailedError, failed_gates, parse_gate
    from lakechain.eval.run import parse_modes
    from lakechain.eval.stage import run_eval

    modes = parse_modes(args.modes or settings.retrieval.mode)
    gates = [parse_gate(g, settings.retrieval.mode) for g in args.fail_under]  # checked before Spark starts
    spark, tables = _session(settings, ctx, reader=args.no_write)
    report = run_eval(spark, settings, tables, args.questions, modes, write=not args.no_write)
    print(report)
    failures = failed_gates(report.summaries, gates)
    if failures:
        where = "" if args.no_write else f" (rows of run {report.run_id} in eval_results)"
        raise GateFailedError(f"eval below --fail-under: {'; '.join(failures)}{where}")
    return 0


def cmd_server(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    """``server start|stop|status``; status exits 1 when no server answers (for scripts)."""
    from lakechain.storage import server

    if args.action == "start":
        state, started = server.start(settings, args.port or server.DEFAULT_PORT, args.timeout)
        print(f"{'started' if started else 'already running'}: {server.describe(state)}")
        return 0
    if args.action == "stop":
        stopped = server.stop(settings, args.timeout)
        print(f"stopped: pid {stopped['pid']}" if stopped else f"no server for {server.root_of(settings)}")
        return 0
    answering, line = server.status(settings)
    print(line)
    return 0 if answering else 1


def cmd_cache(settings: Settings, args: argparse.Namespace, ctx: Context) -> int:
    from lakechain.tasks.cache_table import cache_clear, cache_stats

    _, tables = _session(settings, ctx, reader=args.action == "stats")
    if args.action == "stats":
        print(cache_stats(tables))
    else:
        which = f" of model {args.model}" if args.model else ""
        print(f"llm_cache: {cache_clear(tables, args.model)} entries{which} deleted")
    return 0


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
    "server": (),
    "cache": (),
    "report": (),
}

COMMANDS = {
    "embed": cmd_embed,
    "index": cmd_index,
    "run-tasks": cmd_run_tasks,
    "pipeline": cmd_pipeline,
    "sql": cmd_sql,
    "ask": cmd_ask,
    "eval": cmd_eval,
    "server": cmd_server,
    "cache": cmd_cache,
    "report": cmd_report,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
