"""The per-partition executor: one retrieval batch, bounded concurrency, per-task errors."""

from __future__ import annotations

import threading
import time
from typing import Any

from lakechain.tasks.execute import ExecConfig, ImageResult, QAResult, TaskInput, run_partition
from lakechain.tasks.ratelimit import RateLimiter
from lakechain.tasks.retry import Classification, RetryPolicy


class Transient(Exception):
    pass


def classify(exc: BaseException) -> Classification:
    return Classification(isinstance(exc, Transient))


class FakeServices:
    chat_limited = True
    image_limited = True

    def __init__(self, delay: float = 0.0, fail: dict[str, list[BaseException]] | None = None) -> None:
        self.delay = delay
        self.fail = fail or {}
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.retrieve_calls: list[list[str]] = []
        self.calls: list[tuple[str, str]] = []

    def _enter(self, kind: str, key: str) -> None:
        with self.lock:
            self.calls.append((kind, key))
            errors = self.fail.get(key)
            if errors:
                raise errors.pop(0)
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1

    def retrieve_many(self, questions: list[str]) -> list[list[Any]]:
        self.retrieve_calls.append(list(questions))
        return [[{"chunk_id": f"c-{q}", "doc_id": "d", "score": 0.9}] for q in questions]

    def answer(self, question: str, docs: list[Any], reply: Any = None) -> QAResult:
        if reply is not None:  # read a cached reply: no call
            return QAResult(reply["response"], list(docs), {}, reply["model"])
        self._enter("answer", question)
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        text = f"answer to {question}"
        return QAResult(text, list(docs), usage, "fake-chat", reply={"response": text, "model": "fake-chat"})

    def illustration_prompt(
        self, question: str, qa: QAResult, hint: str | None
    ) -> tuple[str, dict[str, int]]:
        self._enter("illustration", question)
        return f"picture of {qa.answer}" + (f" in the style {hint}" if hint else ""), {"prompt_tokens": 3}

    def image(self, prompt: str) -> ImageResult:
        self._enter("image", prompt)
        return ImageResult(b"\x89PNG" + prompt.encode(), prompt, "fake-image", {})

    def estimate_tokens(self, question: str, docs: list[Any]) -> int:
        return 20


def cfg(**kw: Any) -> ExecConfig:
    base = {"policy": RetryPolicy(max_attempts=3, base_s=0.0, max_s=0.0), "classify": classify, "seed": 0}
    return ExecConfig(**{**base, **kw})


def test_bounded_concurrency_is_never_exceeded_and_is_used():
    services = FakeServices(delay=0.02)
    tasks = [TaskInput(f"t{i}", f"q{i}", f"p{i}" if i % 2 else None) for i in range(40)]
    run = run_partition(tasks, services, cfg(max_concurrency=3))
    assert services.peak == 3 and run.max_in_flight == 3
    assert [o.task_id for o in run.outcomes] == [t.task_id for t in tasks]
    assert all(o.status == "ok" for o in run.outcomes)


def test_one_retrieval_batch_for_all_questions_of_the_partition():
    services = FakeServices()
    tasks = [TaskInput("a", "qa1", None), TaskInput("b", None, "pb"), TaskInput("c", "qa3", "pc")]
    run = run_partition(tasks, services, cfg())
    assert services.retrieve_calls == [["qa1", "qa3"]]
    a, b, c = run.outcomes
    assert (a.qa_status, a.image_status, a.answer) == ("ok", "skipped", "answer to qa1")
    assert a.sources == [{"chunk_id": "c-qa1", "doc_id": "d", "score": 0.9}]
    assert (b.qa_status, b.image_status, b.image_png) == ("skipped", "ok", b"\x89PNGpb")
    assert (c.qa_status, c.image_status, c.attempts) == ("ok", "ok", 2)
    assert (a.prompt_tokens, a.completion_tokens, b.prompt_tokens) == (10, 5, 0)


def test_failures_stay_in_their_task_and_branch():
    services = FakeServices(
        fail={
            "q-retry": [Transient("429"), Transient("500")],
            "q-fatal": [ValueError("400 bad request")],
            "p-dead": [Transient("500")] * 5,
        }
    )
    tasks = [
        TaskInput("retry", "q-retry", None),
        TaskInput("fatal", "q-fatal", "p-ok"),
        TaskInput("dead", "q-ok", "p-dead"),
    ]
    retry, fatal, dead = run_partition(tasks, services, cfg()).outcomes
    assert (retry.status, retry.attempts) == ("ok", 3)
    assert (fatal.qa_status, fatal.image_status, fatal.status) == ("error", "ok", "error")
    assert "not retryable" in (fatal.qa_error or "") and "400 bad request" in (fatal.qa_error or "")
    assert (dead.qa_status, dead.image_status, dead.attempts) == ("ok", "error", 1 + 3)
    assert "after 3 attempts" in (dead.image_error or "")
    assert dead.error and dead.error.startswith("image: ")


def test_illustrate_writes_a_prompt_from_the_answer_then_an_image():
    services = FakeServices()
    saved: dict[str, bytes] = {}

    def save(task_id: str, png: bytes) -> str:
        saved[task_id] = png
        return f"/images/{task_id}.png"

    (out,) = run_partition(
        [TaskInput("i", "What is Spark?", "watercolour", True)], services, cfg(save_image=save)
    ).outcomes
    assert out.status == "ok"
    assert out.image_prompt_used == "picture of answer to What is Spark? in the style watercolour"
    assert out.image_path == "/images/i.png" and saved["i"] == out.image_png
    assert [k for k, _ in services.calls] == ["answer", "illustration", "image"]
    assert out.prompt_tokens == 13


def test_illustration_is_skipped_with_a_reason_when_the_answer_failed():
    services = FakeServices(fail={"q": [ValueError("refused")]})
    (out,) = run_partition([TaskInput("i", "q", None, True)], services, cfg()).outcomes
    assert (out.qa_status, out.image_status) == ("error", "error")
    assert "no answer to illustrate" in (out.image_error or "")


def test_a_not_in_context_answer_is_not_illustrated():
    class NoContext(FakeServices):
        def answer(self, question: str, docs: list[Any], reply: Any = None) -> QAResult:
            return QAResult("Not in context.", [], {}, "fake-chat", not_in_context=True)

    services = NoContext()
    (out,) = run_partition([TaskInput("i", "Who won in 1066?", None, True)], services, cfg()).outcomes
    assert (out.status, out.qa_status, out.image_status) == ("ok", "ok", "skipped")
    assert "not in context" in (out.image_error or "") and out.image_png is None
    assert [k for k, _ in services.calls] == []


def test_failed_retrieval_fails_qa_branches_only():
    class NoIndex(FakeServices):
        def retrieve_many(self, questions: list[str]) -> list[list[Any]]:
            raise RuntimeError("index missing")

    tasks = [TaskInput("a", "q", "p"), TaskInput("b", "q2", None)]
    a, b = run_partition(tasks, NoIndex(), cfg()).outcomes
    assert (a.qa_status, a.image_status, b.qa_status) == ("error", "ok", "error")
    assert "index missing" in (a.qa_error or "")


def test_a_failed_retrieval_batch_falls_back_to_one_question_at_a_time():
    class BatchBreaks(FakeServices):
        def retrieve_many(self, questions: list[str]) -> list[list[Any]]:
            if len(questions) > 1:
                raise ValueError("payload too large")
            return super().retrieve_many(questions)

    services = BatchBreaks()
    run = run_partition([TaskInput(f"t{i}", f"q{i}", None) for i in range(5)], services, cfg())
    assert all(o.status == "ok" for o in run.outcomes)
    assert sorted(map(tuple, services.retrieve_calls)) == [("q0",), ("q1",), ("q2",), ("q3",), ("q4",)]
    assert all(o.attempts == 2 for o in run.outcomes)  # one retrieval + one answer each


def test_each_attempt_takes_a_request_slot_from_the_limiter():
    limiter = RateLimiter(requests_per_minute=60_000, tokens_per_minute=10**9)
    taken: list[int] = []
    original = limiter.acquire
    limiter.acquire = lambda est=0: taken.append(est) or original(est)  # type: ignore[method-assign]
    services = FakeServices(fail={"q": [Transient("429")]})
    (out,) = run_partition([TaskInput("a", "q", "p")], services, cfg(limiter=limiter)).outcomes
    assert out.status == "ok" and out.attempts == 3
    assert taken == [20, 20, 0]  # two answer attempts with the token estimate, one image


def test_empty_partition():
    assert run_partition([], FakeServices(), cfg()).outcomes == []


def test_tasks_sharing_a_cache_key_make_one_call():
    services = FakeServices(delay=0.02)
    tasks = [TaskInput(f"t{i}", "same q", None, cache_key="k1") for i in range(6)]
    tasks.append(TaskInput("other", "other q", None, cache_key="k2"))
    run = run_partition(tasks, services, cfg(max_concurrency=4))
    assert sorted(q for k, q in services.calls if k == "answer") == ["other q", "same q"]
    first, *rest, other = run.outcomes
    assert (first.cache_hit, first.calls_saved) == (False, 0)
    assert first.new_reply == {"response": "answer to same q", "model": "fake-chat"}
    assert all(o.cache_hit and o.calls_saved == 1 and o.new_reply is None for o in rest)
    assert all(o.answer == "answer to same q" and o.attempts == 0 and o.prompt_tokens == 0 for o in rest)
    assert (other.cache_hit, other.cache_key, other.new_reply is not None) == (False, "k2", True)


def test_a_cached_reply_is_read_without_a_call():
    services = FakeServices()
    cached = {"response": "from the cache", "model": "fake-chat"}
    task = TaskInput("a", "q", None, cache_key="k", cached=cached)
    (out,) = run_partition([task], services, cfg()).outcomes
    assert services.calls == []
    assert (out.status, out.answer, out.cache_hit, out.calls_saved) == ("ok", "from the cache", True, 1)
    assert (out.attempts, out.prompt_tokens, out.new_reply) == (0, 0, None)


def test_a_failed_call_is_not_shared_the_others_call_for_themselves():
    services = FakeServices(fail={"q": [ValueError("400 bad request")]})
    tasks = [TaskInput(f"t{i}", "q", None, cache_key="k") for i in range(3)]
    failed, *others = run_partition(tasks, services, cfg(max_concurrency=3)).outcomes
    assert (failed.status, failed.new_reply, failed.cache_hit) == ("error", None, False)
    assert [k for k, _ in services.calls] == ["answer"] * 3
    assert all(o.status == "ok" and not o.cache_hit and o.new_reply is not None for o in others)


def test_tasks_without_a_cache_key_each_call():
    services = FakeServices()
    run = run_partition([TaskInput(f"t{i}", "q", None) for i in range(3)], services, cfg())
    assert len(services.calls) == 3 and not any(o.cache_hit or o.new_reply for o in run.outcomes)
