"""Pure metrics of ``lakechain eval``: matching, ranks, per-question scores, summaries."""

from __future__ import annotations

import json

import pytest

from lakechain.config import ConfigError
from lakechain.errors import UserError
from lakechain.eval.metrics import (
    EvalQuestion,
    EvalSetError,
    doc_matches,
    failed_gates,
    first_rank,
    format_summaries,
    parse_gate,
    read_questions,
    score_question,
    summarize,
)
from lakechain.eval.run import parse_modes


def q(expected=("json",), phrase="JSONDecodeError") -> EvalQuestion:
    return EvalQuestion(id="q1", question="Which error?", expected_docs=list(expected), key_phrase=phrase)


def test_expected_docs_match_by_id_or_file_stem():
    assert doc_matches("json.txt", "json") and doc_matches("sub/json.txt", "json")
    assert doc_matches("os.path.txt", "os.path") and doc_matches("json.txt", "json.txt")
    assert not doc_matches("jsonl.txt", "json") and not doc_matches(None, "json")
    assert first_rank(["csv.txt", "csv.txt", "json.txt"], ["json"]) == 3
    assert first_rank(["csv.txt"], ["json"]) is None


def test_score_question_hits_rank_phrase_and_citations():
    s = score_question(q(), ["csv.txt", "json.txt"], "It raises jsondecodeerror. [2]", False, ["json.txt"])
    assert s["rank"] == 2 and s["hit_at_1"] is False and s["hit_at_5"] is True
    assert s["reciprocal_rank"] == pytest.approx(0.5)
    assert s["key_phrase_found"] is True and s["citation_precision"] == 1.0
    miss = score_question(q(), ["a.txt"] * 6 + ["json.txt"], "Not in context.", True, [])
    assert miss["rank"] == 7 and miss["hit_at_5"] is False and miss["reciprocal_rank"] == pytest.approx(1 / 7)
    assert miss["key_phrase_found"] is False and miss["not_in_context"] is True
    assert miss["citation_precision"] is None  # nothing cited: not a precision of 0
    half = score_question(q(), ["json.txt"], "x", False, ["json.txt", "csv.txt"])
    assert half["citation_precision"] == pytest.approx(0.5)


def test_metrics_a_question_cannot_have_are_none_and_left_out_of_means():
    phrase_only = score_question(q(expected=(), phrase="dedent"), ["x.txt"], "use dedent", False, ["x.txt"])
    assert phrase_only["hit_at_1"] is None and phrase_only["reciprocal_rank"] is None
    assert phrase_only["citation_precision"] is None
    docs_only = score_question(q(phrase=None), ["json.txt"], "anything", False, [])
    summary = summarize([phrase_only, docs_only])
    assert summary["questions"] == 2
    assert summary["hit_at_1"] == 1.0 and summary["mrr"] == 1.0  # only docs_only has docs
    assert summary["key_phrase_rate"] == 1.0  # only phrase_only has a phrase
    assert summary["not_in_context_rate"] == 0.0 and summary["citation_precision"] is None
    table = format_summaries({"hybrid": summary})
    assert "hit@1" in table and "hybrid" in table and "—" in table


def test_read_questions_validates_lines(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(
        json.dumps({"id": 1, "question": " Q? ", "expected_docs": "json", "key_phrase": "x"}) + "\n\n"
    )
    [one] = read_questions(good)
    assert one == {"id": "1", "question": "Q?", "expected_docs": ["json"], "key_phrase": "x"}
    cases = {
        '{"question": "Q"}': "'id' is missing",
        '{"id": 1, "question": ""}': "non-empty string",
        '{"id": 1, "question": "Q"}': "give 'expected_docs' or 'key_phrase'",
        '{"id": 1, "question": "Q", "expected_docs": [1]}': "list of document ids",
        "[1]": "expected a JSON object",
        "{bad": "not JSON",
    }
    for line, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(line + "\n")
        with pytest.raises(EvalSetError, match=message):
            read_questions(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "question": "Q", "key_phrase": "x"}\n' * 2)
    with pytest.raises(EvalSetError, match="duplicate question ids"):
        read_questions(dup)


def test_the_shipped_set_is_valid_and_has_exact_term_questions():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data" / "eval"
    questions = read_questions(root / "questions.jsonl")
    assert len(questions) >= 60
    corpus = {
        p.stem: " ".join(p.read_text(encoding="utf-8").split()).lower() for p in root.glob("corpus/*.txt")
    }
    for one in questions:
        [module] = one["expected_docs"]
        assert one["key_phrase"].lower() in corpus[module], one["id"]
    assert sum("Error" in (one["key_phrase"] or "") for one in questions) >= 10
    assert any("//" in one["question"] for one in questions)


def test_parse_modes():
    assert parse_modes("dense, hybrid,dense") == ["dense", "hybrid"]
    with pytest.raises(ConfigError, match="allowed: dense, keyword, hybrid"):
        parse_modes("dense,bm25")


def test_eval_command_rejects_unknown_modes_before_any_spark(capsys):
    from pathlib import Path

    from lakechain.cli import build_parser, main

    args = build_parser().parse_args(["eval", "--modes", "dense,hybrid", "--no-write"])
    assert args.command == "eval" and args.questions == "data/eval/questions.jsonl" and args.no_write
    conf = Path(__file__).resolve().parents[2] / "conf" / "local.yaml"
    assert main(["eval", "--config", str(conf), "--modes", "dense,bm25"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lakechain: --modes: unknown mode(s) ['bm25']") and "Traceback" not in err


def _summary(**values: float | None) -> dict:
    base = dict(questions=2, hit_at_1=None, hit_at_5=None, mrr=None, key_phrase_rate=None,
                not_in_context_rate=0.0, citation_precision=None)  # fmt: skip
    return {**base, **values}


def test_gate_without_mode_applies_to_the_configured_mode():
    assert parse_gate("hit@1=0.95", "hybrid") == {"mode": "hybrid", "metric": "hit@1", "minimum": 0.95}
    assert parse_gate("dense:mrr=0.9", "hybrid")["mode"] == "dense"


@pytest.mark.parametrize("text", ["hit@1", "hit@2=0.9", "hit@1=high", "hit@1=1.5", "=0.5"])
def test_malformed_gate_names_the_form_and_the_metrics(text):
    with pytest.raises(UserError, match=r"\[MODE:\]METRIC=MIN .*hit@1, hit@5, mrr"):
        parse_gate(text, "hybrid")


def test_gates_report_each_metric_below_its_floor():
    summaries = {"hybrid": _summary(hit_at_1=0.9, hit_at_5=1.0), "dense": _summary(hit_at_1=0.8)}
    gates = [parse_gate(g, "hybrid") for g in ("hit@1=0.95", "hit@5=1", "dense:hit@1=0.8")]
    assert failed_gates(summaries, gates) == ["hybrid hit@1 0.900 < 0.95"]


def test_a_gate_never_passes_vacuously():
    gates = [parse_gate("keyword:hit@1=0.5", "hybrid"), parse_gate("mrr=0.5", "hybrid")]
    assert failed_gates({"hybrid": _summary(hit_at_1=1.0)}, gates) == [
        "keyword hit@1 was not measured",
        "hybrid mrr was not measured",
    ]
