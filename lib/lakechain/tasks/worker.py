"""Executor side of the task stage: the ``mapInPandas`` function and what it loads once.

Each Spark Python worker builds the chains once per (settings, index build) and keeps
them in a module-level cache, so models, the index and HTTP clients are loaded once per
worker process, not once per partition or task. Workers are handed the index build the
driver resolved, so every row of a run is answered from the same build even if a new
one becomes current mid-run.

Retries happen in one layer only, the task stage (``retry.py``): :func:`worker_settings`
builds the provider clients with ``max_retries=0`` and ``timeout = min(<section>.timeout_s,
tasks.timeout_s)``, so one attempt is one HTTP call and the budgets and the ``attempts``
column count real calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd

from lakechain.config import Settings
from lakechain.runtime.cache import per_process
from lakechain.storage.schemas import EXECUTED_COLUMNS, PREPARED_COLUMNS, names
from lakechain.tasks.execute import (
    ExecConfig,
    ImageResult,
    QAResult,
    Retrieved,
    TaskInput,
    retrieve_partition,
    run_partition,
)
from lakechain.tasks.llm_cache import cache_key, call_params
from lakechain.tasks.ratelimit import RateLimiter
from lakechain.tasks.results import RunContext, outcome_row, parse_error_row
from lakechain.tasks.retry import RetryPolicy


def worker_settings(settings: Settings) -> Settings:
    """Settings for executors: no client-side retries, per-call timeout ≤ ``tasks.timeout_s``."""
    s = settings.model_copy(deep=True)
    for section in (s.chat, s.images, s.embedding):
        section.max_retries = 0
        section.timeout_s = min(section.timeout_s, s.tasks.timeout_s)
    return s


class ChainServices:
    """The chains (``lakechain.chains.build_chains``) seen through ``execute.Services``."""

    def __init__(self, chains: Any, settings: Settings) -> None:
        self.chains = chains
        self.settings = settings
        self.chat_limited = settings.chat.provider != "local"
        self.image_limited = settings.images.provider != "local"

    def retrieve_many(self, questions: list[str]) -> list[list[Any]]:
        return self.chains.retriever.retrieve_many(questions)

    def answer(self, question: str, docs: list[Any], reply: Mapping[str, Any] | None = None) -> QAResult:
        inputs = {"question": question, "docs": docs, **({"reply": dict(reply)} if reply else {})}
        r = self.chains.answer.invoke(inputs)
        usage, model = r.get("usage") or {}, r.get("model") or ""
        share = r.get("grounded_share")
        return QAResult(
            r["answer"], r["sources"], usage, model, bool(r.get("not_in_context")),
            None if share is None else float(share), bool(r.get("not_grounded")), r.get("reply"),
        )  # fmt: skip

    def answer_key(self, question: str, docs: list[Any]) -> str | None:
        """The response-cache key of the answer call for ``docs`` (None: no call is made)."""
        from lakechain.chains.qa import qa_messages, question_of

        if not docs or not question.strip():
            return None
        return cache_key(call_params(self.settings.chat), qa_messages(question_of(question), docs))

    def illustration_prompt(
        self, question: str, qa: QAResult, hint: str | None
    ) -> tuple[str, dict[str, int]]:
        from lakechain.chains.illustrated import write_image_prompt

        prompt, usage = write_image_prompt(self.chains.chat_model, question, qa.answer)
        return (f"{prompt} Style: {hint}" if hint else prompt), usage

    def image(self, prompt: str) -> ImageResult:
        r = self.chains.image.invoke({"prompt": prompt})
        return ImageResult(
            r["png"], r.get("prompt_used") or prompt, r.get("model") or "", r.get("usage") or {}
        )

    def estimate_tokens(self, question: str, docs: list[Any]) -> int:
        """Rough prompt size (4 characters a token) plus the completion allowance."""
        chars = len(question) + sum(len(getattr(d, "page_content", "")) for d in docs) + 600
        return chars // 4 + self.settings.chat.max_tokens


class _NoIndex:
    """Searcher for batches without questions: no index is needed, none is loaded."""

    def search_chunks(self, matrix: Any, k: int) -> list[list[Any]]:
        raise RuntimeError("no index was loaded for this run (it has no questions)")


def worker_services(settings: Settings, build_dir: str | None) -> ChainServices:
    """One :class:`ChainServices` per Python worker, settings and index build."""
    # The JSON dump masks api keys, so their values are hashed in: a rotated key must not
    # reuse clients built with the old one in a long-lived worker.
    secrets = [c.api_key.get_secret_value() for c in (settings.embedding, settings.chat, settings.images)
               if c.api_key is not None]  # fmt: skip
    from lakechain.chains.chat_models import chat_endpoint  # a restarted local LLM server has a new port

    key = f"{settings.model_dump_json()}|{build_dir}|{secrets}|{chat_endpoint(settings.chat)}"
    key = hashlib.sha256(key.encode()).hexdigest()
    return per_process("chain-services", key, lambda: _build_services(settings, build_dir))


def _build_services(settings: Settings, build_dir: str | None) -> ChainServices:
    from lakechain.chains import build_chains
    from lakechain.embed.embedders import cached_embedder

    embedder = cached_embedder(settings.embedding)
    searcher: Any = _NoIndex()
    if build_dir is not None:
        from lakechain.index.search import cached_load

        searcher = cached_load(build_dir, expected_model=embedder.name, nprobe=settings.index.nprobe)
    return ChainServices(build_chains(settings, searcher, embedder=embedder), settings)


def image_file_path(image_dir: str, task_id: str) -> str:
    """``<image_dir>/<task_id>.png``; an id that is not a safe file name gets a readable, unique one."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", task_id)[:100].lstrip(".") or "task"
    if safe != task_id:
        safe += "-" + hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:10]
    return os.path.join(image_dir, safe + ".png")


def save_png(image_dir: str, task_id: str, png: bytes) -> str:
    """Write atomically (temp file + rename): a killed run never leaves a truncated PNG, and
    a failed write (a full disk) leaves no temporary file behind."""
    os.makedirs(image_dir, exist_ok=True)
    path = image_file_path(image_dir, task_id)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(png)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def _clean(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


EXECUTED_NAMES = names(EXECUTED_COLUMNS)
PREPARED_NAMES = names(PREPARED_COLUMNS)


def _records(batches: Iterator[pd.DataFrame]) -> list[dict[str, Any]]:
    """The whole partition as plain dicts (one retrieval batch, one pool of calls)."""
    frames = [b for b in batches if len(b)]
    if not frames:
        return []
    return [{k: _clean(v) for k, v in r.items()} for r in pd.concat(frames).to_dict("records")]


def _frame(rows: list[dict[str, Any]], names: list[str]) -> pd.DataFrame:
    """Rows as a frame with every column: a key no row sets would become an all-NaN float
    column, which Spark's Arrow conversion cannot turn into a string or struct column."""
    return pd.DataFrame([[r.get(n) for n in names] for r in rows], columns=names)


def _exec_config(settings: Settings, n_concurrent: int, image_dir: str | None) -> ExecConfig:
    tcfg = settings.tasks
    return ExecConfig(
        policy=RetryPolicy(tcfg.max_attempts, tcfg.backoff_base_s, tcfg.backoff_max_s),
        max_concurrency=tcfg.max_concurrency,
        limiter=RateLimiter.share(tcfg.requests_per_minute, tcfg.tokens_per_minute, n_concurrent),
        save_image=(lambda tid, png: save_png(image_dir, tid, png)) if image_dir else None,
    )


def _task(r: dict[str, Any]) -> TaskInput:
    """A prepared row as the executor's task; ``cached`` is the JSON of a cache hit's reply."""
    cached = json.loads(r["cached"]) if r.get("cached") else None
    return TaskInput(
        r["task_id"], r.get("question"), r.get("image_prompt"), bool(r.get("illustrate")),
        r.get("cache_key"), cached,
    )  # fmt: skip


def docs_to_json(docs: list[Any] | None) -> str | None:
    """Passages as JSON, so the retrieval done before the cache join travels with the row."""
    if docs is None:
        return None
    return json.dumps([{"page_content": d.page_content, "metadata": d.metadata} for d in docs], default=str)


def docs_from_json(text: str | None) -> list[Any] | None:
    from langchain_core.documents import Document

    if text is None:
        return None
    return [Document(page_content=d["page_content"], metadata=d["metadata"]) for d in json.loads(text)]


def make_prepare_fn(
    settings: Settings, build_dir: str | None, use_cache: bool
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The first ``mapInPandas``: one batched retrieval per partition, and for each task its
    passages and (with ``use_cache``) the cache key of its answer call (``PREPARED_COLUMNS``)."""

    def prepare(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        records = _records(batches)
        if not records:
            return
        services = worker_services(settings, build_dir)
        rows = [r for r in records if not r.get("parse_error")]
        found = retrieve_partition([_task(r) for r in rows], services, _exec_config(settings, 1, None))
        for i, r in enumerate(rows):
            docs = found.docs_for.get(i)
            r["docs"] = docs_to_json(docs)
            r["retrieval_error"] = found.error if r.get("question") else None
            key = services.answer_key(r["question"], docs) if use_cache and docs is not None else None
            r["cache_key"] = key
        yield _frame(records, PREPARED_NAMES)

    return prepare


def make_partition_fn(
    settings: Settings, build_dir: str | None, ctx: RunContext, n_concurrent: int, image_dir: str | None
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The second ``mapInPandas``: prepared tasks (with ``cached``, the JSON of the reply the
    driver's join found in ``llm_cache``) in, one result row per task out (``EXECUTED_COLUMNS``).

    ``settings`` should come from :func:`worker_settings`; ``n_concurrent`` is the number of
    partitions running at once, which divides the RPM/TPM budgets.
    """
    keep_png = settings.tasks.store_image_bytes

    def process(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        records = _records(batches)
        if not records:
            return
        invalid = [parse_error_row(r, ctx) for r in records if r.get("parse_error")]
        rows = [r for r in records if not r.get("parse_error")]
        if not rows:
            yield _frame(invalid, EXECUTED_NAMES)
            return
        docs = [docs_from_json(r.get("docs")) for r in rows]
        retrieved = Retrieved(
            {i: d for i, d in enumerate(docs) if d is not None},
            errors={i: r["retrieval_error"] for i, r in enumerate(rows) if r.get("retrieval_error")},
        )
        run = run_partition(
            [_task(r) for r in rows],
            worker_services(settings, build_dir),
            _exec_config(settings, n_concurrent, image_dir),
            retrieved,
        )
        out = [outcome_row(r, o, ctx, keep_png) for r, o in zip(rows, run.outcomes, strict=True)]
        yield _frame(invalid + out, EXECUTED_NAMES)

    return process
