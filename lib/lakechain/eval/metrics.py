"""Retrieval and answer metrics for ``lakechain eval``: pure functions over plain values.

Per question (``score_question``): the rank of the first retrieved chunk from an expected
document, hit@1, hit@5, reciprocal rank, whether the answer contains the key phrase,
whether the answer is "Not in context.", and citation precision (the share of cited
sources that are expected documents). ``summarize`` averages them per mode; a metric a
question cannot have (no expected documents, no key phrase, no citations) is left out of
that metric's mean rather than counted as a miss.

Expected documents match a retrieved ``doc_id`` exactly, or by file name without its
extension (``json`` matches ``json.txt`` and ``sub/json.txt``), so question sets can name
modules or pages rather than corpus paths.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, TypedDict

from lakechain.errors import UserError
from lakechain.runtime.text import open_text


class EvalQuestion(TypedDict):
    """One question of an evaluation set (a jsonl line or a table row)."""

    id: str
    question: str
    expected_docs: list[str]
    key_phrase: str | None


class QuestionScore(TypedDict):
    """Metrics of one answered question (``None``: not applicable to this question)."""

    rank: int | None
    hit_at_1: bool | None
    hit_at_5: bool | None
    reciprocal_rank: float | None
    key_phrase_found: bool | None
    not_in_context: bool
    citation_precision: float | None


class Summary(TypedDict):
    """Means over the questions of one mode (``None`` where no question had the metric)."""

    questions: int
    hit_at_1: float | None
    hit_at_5: float | None
    mrr: float | None
    key_phrase_rate: float | None
    not_in_context_rate: float
    citation_precision: float | None


class EvalSetError(UserError, ValueError):
    """A malformed evaluation set; the message names the line or row and the field."""


def parse_question(record: Mapping[str, Any], where: str) -> EvalQuestion:
    """Validate one record: ``id``, ``question`` and at least one of ``expected_docs``
    (a list, or one string) and ``key_phrase``."""
    qid, question = record.get("id"), record.get("question")
    if qid is None or not str(qid).strip():
        raise EvalSetError(f"{where}: 'id' is missing")
    if not isinstance(question, str) or not question.strip():
        raise EvalSetError(f"{where}: 'question' must be a non-empty string")
    docs = record.get("expected_docs")
    if isinstance(docs, str):
        docs = [docs]
    if docs is None:
        docs = []
    if not isinstance(docs, list | tuple) or not all(isinstance(d, str) and d for d in docs):
        raise EvalSetError(f"{where}: 'expected_docs' must be a list of document ids")
    phrase = record.get("key_phrase")
    if phrase is not None and (not isinstance(phrase, str) or not phrase.strip()):
        raise EvalSetError(f"{where}: 'key_phrase' must be a non-empty string or absent")
    if not docs and phrase is None:
        raise EvalSetError(f"{where}: give 'expected_docs' or 'key_phrase' (or both)")
    return EvalQuestion(id=str(qid), question=question.strip(), expected_docs=list(docs), key_phrase=phrase)


def read_questions(path: str | os.PathLike[str]) -> list[EvalQuestion]:
    """Questions from a JSON-lines file; ids must be unique."""
    out: list[EvalQuestion] = []
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalSetError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise EvalSetError(f"{path}:{n}: expected a JSON object")
            out.append(parse_question(record, f"{path}:{n}"))
    return check_unique(out, str(path))


def check_unique(questions: list[EvalQuestion], where: str) -> list[EvalQuestion]:
    """``questions`` when non-empty with unique ids, else ``EvalSetError``."""
    dupes = sorted(i for i, n in Counter(q["id"] for q in questions).items() if n > 1)
    if dupes:
        raise EvalSetError(f"{where}: duplicate question ids {dupes[:5]}")
    if not questions:
        raise EvalSetError(f"{where}: no questions")
    return questions


def doc_matches(doc_id: str | None, expected: str) -> bool:
    """``doc_id`` is ``expected``, or its file name without extension is (see module docstring)."""
    if not doc_id:
        return False
    if doc_id == expected:
        return True
    name = PurePosixPath(doc_id.replace("\\", "/")).name
    return name == expected or (name.rsplit(".", 1)[0] if "." in name else name) == expected


def is_expected(doc_id: str | None, expected: Sequence[str]) -> bool:
    return any(doc_matches(doc_id, e) for e in expected)


def first_rank(ranked_doc_ids: Sequence[str | None], expected: Sequence[str]) -> int | None:
    """1-based rank of the first chunk from an expected document; None if none was retrieved."""
    for rank, doc_id in enumerate(ranked_doc_ids, 1):
        if is_expected(doc_id, expected):
            return rank
    return None


def score_question(
    question: EvalQuestion,
    ranked_doc_ids: Sequence[str | None],
    answer: str,
    not_in_context: bool,
    cited_doc_ids: Sequence[str | None],
) -> QuestionScore:
    """Metrics of one question from its ranking (best first), answer and cited sources."""
    expected = question["expected_docs"]
    rank = first_rank(ranked_doc_ids, expected) if expected else None
    phrase = question["key_phrase"]
    has_docs = bool(expected)
    precision = None
    if has_docs and cited_doc_ids:
        precision = sum(is_expected(d, expected) for d in cited_doc_ids) / len(cited_doc_ids)
    return QuestionScore(
        rank=rank,
        hit_at_1=(rank == 1) if has_docs else None,
        hit_at_5=(rank is not None and rank <= 5) if has_docs else None,
        reciprocal_rank=(1.0 / rank if rank else 0.0) if has_docs else None,
        key_phrase_found=(phrase.lower() in " ".join(answer.split()).lower()) if phrase else None,
        not_in_context=bool(not_in_context),
        citation_precision=precision,
    )


def _mean(values: Iterable[float | bool | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarize(scores: Sequence[Mapping[str, Any]]) -> Summary:
    """Means of ``QuestionScore`` fields over ``scores`` (rows of one mode)."""
    return Summary(
        questions=len(scores),
        hit_at_1=_mean(s["hit_at_1"] for s in scores),
        hit_at_5=_mean(s["hit_at_5"] for s in scores),
        mrr=_mean(s["reciprocal_rank"] for s in scores),
        key_phrase_rate=_mean(s["key_phrase_found"] for s in scores),
        not_in_context_rate=_mean(s["not_in_context"] for s in scores) or 0.0,
        citation_precision=_mean(s["citation_precision"] for s in scores),
    )


def format_summaries(summaries: Mapping[str, Summary]) -> str:
    """A fixed-width table, one line per mode."""
    cols = ["hit_at_1", "hit_at_5", "mrr", "key_phrase_rate", "not_in_context_rate", "citation_precision"]
    heads = ["hit@1", "hit@5", "MRR", "key phrase", "not in ctx", "cite prec"]
    lines = [f"{'mode':8s} {'n':>4s} " + " ".join(f"{h:>10s}" for h in heads)]
    for mode, s in summaries.items():
        cells = ["—" if s[c] is None else f"{s[c]:.3f}" for c in cols]  # type: ignore[literal-required]
        lines.append(f"{mode:8s} {s['questions']:>4d} " + " ".join(f"{c:>10s}" for c in cells))
    return "\n".join(lines)


GATE_METRICS = {
    "hit@1": "hit_at_1",
    "hit@5": "hit_at_5",
    "mrr": "mrr",
    "key_phrase": "key_phrase_rate",
    "citation_precision": "citation_precision",
}


class Gate(TypedDict):
    """A floor on one metric of one mode: ``--fail-under [MODE:]METRIC=MIN``."""

    mode: str
    metric: str
    minimum: float


class GateFailedError(UserError):
    """An evaluated metric is below its ``--fail-under`` floor (so CI can gate on quality)."""


def parse_gate(text: str, default_mode: str) -> Gate:
    """``"hybrid:hit@1=0.95"`` or ``"hit@5=1"`` (the mode defaults to ``retrieval.mode``)."""
    head, sep, value = text.partition("=")
    mode, _, metric = head.rpartition(":")
    try:
        minimum = float(value)
    except ValueError:
        minimum = float("nan")
    if not sep or metric not in GATE_METRICS or not 0.0 <= minimum <= 1.0:
        raise UserError(
            f"--fail-under {text!r}: expected [MODE:]METRIC=MIN with METRIC one of "
            f"{', '.join(GATE_METRICS)} and MIN in [0, 1], e.g. hybrid:hit@1=0.95"
        )
    return Gate(mode=mode or default_mode, metric=metric, minimum=minimum)


def failed_gates(summaries: Mapping[str, Summary], gates: Sequence[Gate]) -> list[str]:
    """One ``"hybrid hit@1 0.933 < 0.95"`` per gate not met; a gate on a mode that was not
    evaluated, or a metric no question measured, fails too (a gate must not pass vacuously)."""
    failures = []
    for g in gates:
        summary = summaries.get(g["mode"])
        value = None if summary is None else summary[GATE_METRICS[g["metric"]]]  # type: ignore[literal-required]
        if value is None:
            failures.append(f"{g['mode']} {g['metric']} was not measured")
        elif value < g["minimum"]:
            failures.append(f"{g['mode']} {g['metric']} {value:.3f} < {g['minimum']:g}")
    return failures
