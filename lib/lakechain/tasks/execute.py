"""Run one partition's tasks: one batched retrieval, then bounded-concurrency model calls.

Pure with respect to Spark: the model side is a :class:`Services` object (the chains in
production, fakes in tests), so the scheduling, retry, rate-limit and error accounting
logic is tested without a cluster. Every task yields exactly one :class:`TaskOutcome`;
nothing a task does (a provider failure, a bug in a chain) escapes to fail the partition.

Concurrency: a ``ThreadPoolExecutor`` with ``max_concurrency`` workers runs one task per
worker and a task's calls (answer, illustration prompt, image) one after the other, so at
most ``max_concurrency`` model calls are in flight per partition.

Response cache (``llm_cache.py``): a task may come with the cache key of its answer call and
a cached reply (a hit, found by the driver's join with ``llm_cache``). Tasks of a partition
that share a key and have no cached reply make ONE call: the first of them in input order
calls, the others wait for its reply and read it as a hit. A failed call is never shared:
the others then call for themselves.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from lakechain.errors import FULL_DISK
from lakechain.tasks.ratelimit import RateLimiter
from lakechain.tasks.retry import Classification, RetryError, RetryPolicy, call_with_retry, classify_error

OK, ERROR, SKIPPED = "ok", "error", "skipped"


@dataclass(frozen=True)
class TaskInput:
    task_id: str
    question: str | None
    image_prompt: str | None
    illustrate: bool = False
    cache_key: str | None = None
    """Response-cache key of the answer call (None: not cached)."""
    cached: Mapping[str, Any] | None = None
    """The cached reply for ``cache_key`` (``llm_cache.Reply``), when there is one."""


@dataclass
class QAResult:
    answer: str
    sources: list[dict[str, Any]]
    usage: dict[str, int]
    model: str
    not_in_context: bool = False
    """The model said the context does not answer the question (nothing to illustrate)."""
    grounded_share: float | None = None
    """Share of the answer's sentences supported by the passages they cite (None: not checked)."""
    not_grounded: bool = False
    reply: dict[str, Any] | None = None
    """The model reply the answer was read from (``llm_cache.Reply``; None: no model call)."""


@dataclass
class ImageResult:
    png: bytes
    prompt_used: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)


class Services(Protocol):
    """What the executor needs from the chains (see ``worker.ChainServices``)."""

    chat_limited: bool
    """Whether chat calls count against the RPM/TPM budgets (remote providers)."""
    image_limited: bool

    def retrieve_many(self, questions: list[str]) -> list[list[Any]]: ...

    def answer(self, question: str, docs: list[Any], reply: Mapping[str, Any] | None = None) -> QAResult:
        """``reply``: a cached reply to read instead of calling the model."""
        ...

    def illustration_prompt(
        self, question: str, qa: QAResult, hint: str | None
    ) -> tuple[str, dict[str, int]]: ...

    def image(self, prompt: str) -> ImageResult: ...

    def estimate_tokens(self, question: str, docs: list[Any]) -> int: ...


@dataclass
class TaskOutcome:
    task_id: str
    answer: str | None = None
    sources: list[dict[str, Any]] | None = None
    qa_status: str = SKIPPED
    qa_error: str | None = None
    image_png: bytes | None = None
    image_prompt_used: str | None = None
    image_path: str | None = None
    image_status: str = SKIPPED
    image_error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    chat_model: str | None = None
    image_model: str | None = None
    grounded_share: float | None = None
    not_grounded: bool | None = None
    cache_key: str | None = None
    cache_hit: bool = False
    calls_saved: int = 0
    new_reply: dict[str, Any] | None = None
    """A reply this task's call got, to store in ``llm_cache`` (never set for a failure)."""

    @property
    def status(self) -> str:
        return ERROR if ERROR in (self.qa_status, self.image_status) else OK

    @property
    def error(self) -> str | None:
        parts = [
            f"qa: {self.qa_error}" if self.qa_error else "",
            f"image: {self.image_error}" if self.image_error else "",
        ]
        return "; ".join(p for p in parts if p) or None

    def add_usage(self, usage: dict[str, int] | None) -> None:
        usage = usage or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)


@dataclass
class ExecConfig:
    policy: RetryPolicy
    max_concurrency: int = 8
    limiter: RateLimiter | None = None
    classify: Callable[[BaseException], Classification] = classify_error
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    seed: int | None = None
    save_image: Callable[[str, bytes], str | None] | None = None
    """``(task_id, png) -> path``: writes the image file, returns its path."""


class _Runner:
    """Per-partition state shared by the worker threads (retry RNG, in-flight gauge)."""

    def __init__(self, services: Services, cfg: ExecConfig) -> None:
        self.services = services
        self.cfg = cfg
        self._rng = random.Random(cfg.seed)
        self._rng_lock = threading.Lock()
        self._gauge = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.shared: dict[int, Future[dict[str, Any] | None]] = {}
        """Task index → the future reply of the first task with the same cache key."""
        self.leads: dict[int, Future[dict[str, Any] | None]] = {}
        """Task index → the future its own call's reply completes (the first of its key)."""

    def share_calls(self, tasks: Sequence[TaskInput]) -> None:
        """Assign one caller per cache key without a cached reply. Callers come first in
        input order and the pool starts tasks in that order, so a waiting task never holds a
        worker its caller needs."""
        first: dict[str, Future[dict[str, Any] | None]] = {}
        for i, t in enumerate(tasks):
            if t.cache_key is None or t.cached is not None or not t.question:
                continue
            if t.cache_key in first:
                self.shared[i] = first[t.cache_key]
            else:
                self.leads[i] = first[t.cache_key] = Future()

    def _jitter_rng(self) -> random.Random:
        with self._rng_lock:  # one child RNG per call: random.Random is not meant to be shared
            return random.Random(self._rng.random())

    def call(self, fn: Callable[[], Any], what: str, limited: bool, estimate: int = 0) -> tuple[Any, int]:
        """One model call under the budgets and the retry policy; returns (value, attempts)."""

        def attempt() -> Any:
            if limited and self.cfg.limiter is not None:
                self.cfg.limiter.acquire(estimate)
            with self._gauge:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return fn()
            finally:
                with self._gauge:
                    self.in_flight -= 1

        done = call_with_retry(
            attempt,
            self.cfg.policy,
            classify=self.cfg.classify,
            sleep=self.cfg.sleep,
            rng=self._jitter_rng(),
            what=what,
        )
        return done.value, done.attempts

    def settle(self, limited: bool, estimate: int, usage: dict[str, int] | None) -> None:
        if limited and self.cfg.limiter is not None:
            self.cfg.limiter.settle(estimate, int((usage or {}).get("total_tokens") or 0))

    def run_task(
        self, i: int, task: TaskInput, docs: list[Any] | None, retrieval_error: str | None
    ) -> TaskOutcome:
        out = TaskOutcome(task.task_id, cache_key=task.cache_key)
        start = self.cfg.clock()
        qa: QAResult | None = None
        lead = self.leads.get(i)
        try:
            if task.question:
                qa = self._answer(task, self._reply_for(i, task), docs, retrieval_error, out)
        finally:
            if lead is not None:  # waiting tasks get the reply, or None: call for yourselves
                lead.set_result(out.new_reply)
        if task.illustrate or task.image_prompt:
            self._image(task, qa, out)
        out.latency_ms = int(round((self.cfg.clock() - start) * 1000))
        return out

    def _reply_for(self, i: int, task: TaskInput) -> Mapping[str, Any] | None:
        """The cached reply, else the reply of this partition's caller for the same key."""
        if task.cached is not None:
            return task.cached
        shared = self.shared.get(i)
        return shared.result() if shared is not None else None

    def _answer(
        self,
        task: TaskInput,
        reply: Mapping[str, Any] | None,
        docs: list[Any] | None,
        retrieval_error: str | None,
        out: TaskOutcome,
    ) -> QAResult | None:
        question = task.question or ""
        if docs is None:
            # The partition's batched retrieval failed for good: retry this question alone so
            # one bad embedding call cannot fail every question of the partition.
            try:
                found, n = self.call(lambda: self.services.retrieve_many([question]), "retrieval", False)
                out.attempts += n
                docs = list(found[0])
            except Exception as exc:  # becomes this task's error
                out.attempts += getattr(exc, "attempts", 1)
                out.qa_status = ERROR
                out.qa_error = f"{exc} (after the batched retrieval failed: {retrieval_error})"
                return None
        if reply is not None:
            return self._answer_from(reply, question, docs, out)
        limited = self.services.chat_limited
        estimate = self.services.estimate_tokens(question, docs) if limited else 0
        try:
            qa, n = self.call(lambda: self.services.answer(question, docs), "answer", limited, estimate)
        except RetryError as exc:
            out.attempts += exc.attempts
            out.qa_status, out.qa_error = ERROR, str(exc)
            return None
        except Exception as exc:  # a bug in one task must not fail the partition
            out.attempts += 1
            out.qa_status, out.qa_error = ERROR, f"{type(exc).__name__}: {exc}"
            return None
        out.attempts += n
        self.settle(limited, estimate, qa.usage)
        out.add_usage(qa.usage)
        if task.cache_key is not None:
            out.new_reply = qa.reply
        return self._done(qa, out)

    def _answer_from(
        self, reply: Mapping[str, Any], question: str, docs: list[Any], out: TaskOutcome
    ) -> QAResult | None:
        """Read a cached reply (no model call, no attempt, no tokens)."""
        try:
            qa = self.services.answer(question, docs, reply)
        except Exception as exc:  # e.g. the grounding check failed: this task's error
            out.qa_status, out.qa_error = ERROR, f"{type(exc).__name__}: {exc}"
            return None
        out.cache_hit, out.calls_saved = True, out.calls_saved + 1
        return self._done(qa, out)

    @staticmethod
    def _done(qa: QAResult, out: TaskOutcome) -> QAResult:
        out.answer, out.sources, out.chat_model, out.qa_status = qa.answer, qa.sources, qa.model, OK
        out.grounded_share, out.not_grounded = qa.grounded_share, qa.not_grounded
        return qa

    def _image(self, task: TaskInput, qa: QAResult | None, out: TaskOutcome) -> None:
        prompt = task.image_prompt
        try:
            if task.illustrate:
                if qa is None:
                    out.image_status, out.image_error = (
                        ERROR,
                        "no answer to illustrate (the qa branch failed)",
                    )
                    return
                if qa.not_in_context:
                    # Illustrating "not in context" would only decorate a gap (the chains agree).
                    out.image_status, out.image_error = (
                        SKIPPED,
                        "not illustrated: the answer is not in context",
                    )
                    return
                limited = self.services.chat_limited
                estimate = (len(qa.answer) + len(task.question or "")) // 4 + 200 if limited else 0
                (prompt, usage), n = self.call(
                    lambda: self.services.illustration_prompt(task.question or "", qa, task.image_prompt),
                    "illustration prompt",
                    limited,
                    estimate,
                )
                out.attempts += n
                self.settle(limited, estimate, usage)
                out.add_usage(usage)
            image_prompt = prompt or ""
            img, n = self.call(
                lambda: self.services.image(image_prompt), "image", self.services.image_limited
            )
            out.attempts += n
        except RetryError as exc:
            out.attempts += exc.attempts
            out.image_status, out.image_error, out.image_prompt_used = ERROR, str(exc), prompt
            return
        except Exception as exc:  # a bug in one task must not fail the partition
            out.attempts += 1
            out.image_status, out.image_error, out.image_prompt_used = (
                ERROR,
                f"{type(exc).__name__}: {exc}",
                prompt,
            )
            return
        out.add_usage(img.usage)
        out.image_png, out.image_prompt_used, out.image_model = img.png, img.prompt_used, img.model
        if self.cfg.save_image is not None:
            try:
                out.image_path = self.cfg.save_image(task.task_id, img.png)
            except OSError as exc:
                if exc.errno in FULL_DISK:  # not this task's fault: fail the batch, the rerun redoes it
                    raise
                out.image_status, out.image_error = ERROR, f"writing the image file failed: {exc}"
                return
        out.image_status = OK


@dataclass
class PartitionRun:
    outcomes: list[TaskOutcome]
    """One per input task, in input order."""
    max_in_flight: int
    """Most model calls observed in flight at once (≤ ``max_concurrency``)."""
    retrieval_attempts: int


@dataclass
class Retrieved:
    """A partition's batched retrieval: passages per task index (tasks with a question)."""

    docs_for: dict[int, list[Any]]
    error: str | None = None
    """Why the batched retrieval failed (each question then retries alone)."""
    attempts: int = 0
    errors: dict[int, str] = field(default_factory=dict)
    """Per task index, where tasks of several retrieval batches run together."""

    def error_of(self, i: int) -> str | None:
        return self.errors.get(i, self.error)


def retrieve_partition(tasks: Sequence[TaskInput], services: Services, cfg: ExecConfig) -> Retrieved:
    """ONE batched retrieval for all the questions of ``tasks``, under the retry policy."""
    runner = _Runner(services, cfg)
    # Classify once before any thread starts: the classifier imports client modules lazily,
    # and a first import racing in many threads can hand out a half-initialised module.
    cfg.classify(RuntimeError("warm-up"))
    questions = [t.question for t in tasks if t.question]
    if not questions:
        return Retrieved({})
    try:
        found, attempts = runner.call(lambda: services.retrieve_many(list(questions)), "retrieval", False)
        if len(found) != len(questions):
            raise ValueError(f"retrieve_many returned {len(found)} results for {len(questions)} questions")
        it = iter(found)
        return Retrieved({i: next(it) for i, t in enumerate(tasks) if t.question}, None, attempts)
    except RetryError as exc:
        return Retrieved({}, str(exc), exc.attempts)
    except Exception as exc:  # reported on each QA task
        return Retrieved({}, f"retrieval failed: {type(exc).__name__}: {exc}")


def run_partition(
    tasks: Sequence[TaskInput], services: Services, cfg: ExecConfig, retrieved: Retrieved | None = None
) -> PartitionRun:
    """Execute ``tasks`` with bounded concurrency after ONE batched retrieval for all
    questions (or the one already done: ``retrieved``)."""
    if retrieved is None:
        retrieved = retrieve_partition(tasks, services, cfg)
    runner = _Runner(services, cfg)
    cfg.classify(RuntimeError("warm-up"))
    runner.share_calls(tasks)
    with ThreadPoolExecutor(
        max_workers=max(1, cfg.max_concurrency), thread_name_prefix="lakechain-task"
    ) as pool:
        futures = [
            pool.submit(runner.run_task, i, t, retrieved.docs_for.get(i), retrieved.error_of(i))
            for i, t in enumerate(tasks)
        ]
        outcomes = [f.result() for f in futures]
    return PartitionRun(outcomes, runner.max_in_flight, retrieved.attempts)
