"""Task input parsing: both input shapes, derived ids, and every bad-input kind."""

from __future__ import annotations

import json

import pytest

from lakechain.tasks.parse import TaskInputError, input_hash, parse_lines, parse_rows

MAX = 100


def one(line: str, max_chars: int = MAX):
    (task,) = parse_lines([line], max_chars)
    return task


def test_multi_task_form_with_both_branches():
    t = one(json.dumps({"qa": {"question": " What is Spark? "}, "image_generation": {"prompt": "A spark"}}))
    assert t.parse_error is None
    assert (t.question, t.image_prompt, t.illustrate) == ("What is Spark?", "A spark", False)
    assert t.task_id.startswith("t-") and len(t.task_id) == 18
    assert t.input_hash == input_hash("What is Spark?", "A spark", False)


def test_flat_form_with_given_id_and_illustrate():
    t = one(json.dumps({"task_id": 7, "question": "What is FAISS?", "illustrate": True}))
    assert (t.task_id, t.question, t.image_prompt, t.illustrate, t.parse_error) == (
        "7",
        "What is FAISS?",
        None,
        True,
        None,
    )


def test_derived_ids_are_stable_and_content_based():
    a = parse_lines(['{"qa": {"question": "Q1"}}', '{"qa": {"question": "Q2"}}'], MAX)
    b = parse_lines(['{"qa": {"question": "Q2"}}', "", '{"qa": {"question": "Q1"}}'], MAX)
    assert {t.task_id for t in a} == {t.task_id for t in b}
    assert a[0].task_id != a[1].task_id
    # the same content in the flat form is the same task
    assert one('{"question": "Q1"}').task_id == a[0].task_id


def test_identical_id_less_lines_are_distinct_tasks():
    tasks = parse_lines(['{"qa": {"question": "Q"}}'] * 3, MAX)
    ids = [t.task_id for t in tasks]
    assert len(set(ids)) == 3
    assert ids[1] == ids[0] + "-2" and ids[2] == ids[0] + "-3"


def test_changed_question_changes_input_hash_but_not_given_id():
    a = one('{"task_id": "x", "question": "What is Delta Lake?"}')
    b = one('{"task_id": "x", "question": "What is Delta Lake exactly?"}')
    assert a.task_id == b.task_id and a.input_hash != b.input_hash


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{}", "neither a question nor an image prompt"),
        ('{"task_id": "a"}', "neither a question nor an image prompt"),
        ('{"qa": {"question": "   "}}', "qa.question is empty"),
        ('{"question": ""}', "question is empty"),
        ('{"qa": {"question": "' + "x" * (MAX + 1) + '"}}', "more than tasks.max_question_chars=100"),
        ('{"image_prompt": "' + "y" * (MAX + 1) + '"}', "image_prompt has 101 characters"),
        ('{"qa": {"question": "Q"', "malformed JSON"),
        ("not json at all", "malformed JSON"),
        ('{"question": "Q", "n": ' + "9" * 5000 + "}", "malformed JSON"),
        ("[" * 50_000, "malformed JSON"),
        ('["a", "list"]', "must be a JSON object, got list"),
        ("null", "must be a JSON object, got null"),
        ('{"qa": {"question": "Q"}, "colour": "red"}', "unknown keys: colour"),
        ('{"qa": {"question": "Q", "k": 3}}', "unknown keys in qa: k"),
        ('{"qa": "What is Spark?"}', "qa must be an object"),
        ('{"qa": {}}', "qa has no 'question'"),
        ('{"qa": {"question": 42}}', "qa.question must be a string, got int"),
        ('{"question": "Q", "illustrate": "yes"}', "illustrate must be true or false"),
        ('{"image_prompt": "P", "illustrate": true}', "illustrate needs a question"),
        ('{"qa": {"question": "Q"}, "question": "Q"}', "both qa.question and question"),
        ('{"task_id": ["x"], "question": "Q"}', "task_id must be a string or integer"),
        ('{"task_id": " ", "question": "Q"}', "task_id is empty"),
    ],
)
def test_bad_input_becomes_an_error_task_with_the_reason(line: str, reason: str):
    t = one(line)
    assert t.parse_error is not None and reason in t.parse_error
    assert t.parse_error.startswith("line 1: ")
    assert t.raw == line and t.task_id


def test_error_rows_keep_their_given_task_id_and_line_number():
    tasks = parse_lines(['{"question": "fine"}', '{"task_id": "bad-1", "question": ""}'], MAX)
    assert tasks[0].parse_error is None
    assert tasks[1].task_id == "bad-1" and tasks[1].parse_error.startswith("line 2: ")


def test_oversize_raw_line_is_clipped():
    line = json.dumps({"question": "z" * 200_000})
    t = one(line, max_chars=10)
    assert t.parse_error and len(t.raw) < 70_000 and "truncated" in t.raw


def test_duplicate_task_ids_fail_up_front_naming_them():
    lines = [
        '{"task_id": "a", "question": "Q1"}',
        '{"task_id": "b", "question": "Q2"}',
        '{"task_id": "a", "question": "Q3"}',
        '{"task_id": "b", "image_prompt": "P"}',
        '{"task_id": "c", "question": "Q4"}',
    ]
    with pytest.raises(TaskInputError) as err:
        parse_lines(lines, MAX, source="tasks.jsonl")
    msg = str(err.value)
    assert "tasks.jsonl" in msg and "'a'" in msg and "'b'" in msg and "'c'" not in msg


def test_duplicate_given_id_on_an_invalid_line_still_counts():
    with pytest.raises(TaskInputError, match="'a'"):
        parse_lines(['{"task_id": "a", "question": "Q"}', '{"task_id": "a"}'], MAX)


def test_table_rows_ignore_bookkeeping_columns_and_nulls():
    rows = [
        {
            "task_id": "r1",
            "question": "What is Spark?",
            "image_prompt": None,
            "illustrate": None,
            "input_hash": "x",
        },
        {"task_id": "r2", "question": None, "image_prompt": "A lake", "illustrate": False, "raw": "{}"},
        {"task_id": "r3", "question": None, "image_prompt": None, "illustrate": None},
    ]
    t1, t2, t3 = parse_rows(rows, MAX)
    assert (t1.question, t1.image_prompt, t1.parse_error) == ("What is Spark?", None, None)
    assert (t2.question, t2.image_prompt, t2.parse_error) == (None, "A lake", None)
    assert "neither a question nor an image prompt" in (t3.parse_error or "")
    assert json.loads(t1.raw) == {"task_id": "r1", "question": "What is Spark?"}


def test_fixing_an_invalid_line_changes_its_input_hash_so_it_runs_again():
    (broken,) = parse_lines(['{"task_id": "invalid", "question": ""}'], 100)
    (fixed,) = parse_lines(['{"task_id": "invalid", "question": "now fine"}'], 100)
    assert broken.parse_error and not fixed.parse_error and broken.input_hash != fixed.input_hash
