"""Task input parsing and validation (pure).

Why: the task stage must account for every input line. Each line becomes exactly one
:class:`ParsedTask`; a line that cannot be run still becomes a task whose
``parse_error`` says why, so it lands in ``results`` as an error row instead of crashing
the job or vanishing. The only up-front failure is a duplicate ``task_id``: MERGE on
``task_id`` would otherwise silently keep one of the rows.

Two input shapes are accepted, per line:

* the seed's multi-task form ``{"task_id"?: .., "qa": {"question": ..},
  "image_generation": {"prompt": ..}, "illustrate"?: bool}`` (either branch or both);
* flat rows ``{"task_id"?, "question"?, "image_prompt"?, "illustrate"?}`` (also what a
  table input yields, one dict per row).

A missing ``task_id`` is derived from the canonical JSON of the task's content
(``t-<sha256[:16]>``), so rerunning the same file yields the same ids. Identical
id-less lines are distinct tasks numbered by occurrence (``-2``, ``-3``...), never
silently merged.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lakechain.config import ConfigError
from lakechain.runtime.text import escaped_byte, first_surrogate, surrogate_reason

TOP_KEYS = frozenset({"task_id", "qa", "image_generation", "illustrate", "question", "image_prompt"})
QA_KEYS = frozenset({"question"})
IMAGE_KEYS = frozenset({"prompt"})
MAX_TASK_ID_CHARS = 256
MAX_RAW_CHARS = 65_536


class TaskInputError(ConfigError):
    """The task input as a whole cannot be run (e.g. duplicate task ids); names the fix."""


@dataclass(frozen=True)
class ParsedTask:
    """One input line, normalised; ``parse_error`` set means it will not be executed."""

    task_id: str
    question: str | None
    image_prompt: str | None
    illustrate: bool
    input_hash: str
    raw: str
    parse_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def input_hash(question: str | None, image_prompt: str | None, illustrate: bool) -> str:
    """Hash of what determines a task's output: a changed question means a new result."""
    return _sha(canonical_json({"q": question, "p": image_prompt, "i": bool(illustrate)}))


def derived_task_id(content: str) -> str:
    return "t-" + _sha(content)[:16]


class _Invalid(ValueError):
    pass


def _text_field(value: Any, name: str, max_chars: int) -> str | None:
    """None when absent; the stripped string when valid; raises with the reason otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise _Invalid(f"{name} is empty")
    if len(text) > max_chars:
        raise _Invalid(f"{name} has {len(text)} characters, more than tasks.max_question_chars={max_chars}")
    return text


def _branch(obj: Mapping[str, Any], key: str, inner: str, allowed: frozenset[str]) -> Any:
    """The ``inner`` value of a multi-task branch such as ``{"qa": {"question": ...}}``."""
    if key not in obj or obj[key] is None:
        return None
    branch = obj[key]
    if not isinstance(branch, Mapping):
        raise _Invalid(f'{key} must be an object like {{"{inner}": ...}}, got {type(branch).__name__}')
    unknown = sorted(set(branch) - allowed)
    if unknown:
        raise _Invalid(f"unknown keys in {key}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    if inner not in branch:
        raise _Invalid(f"{key} has no '{inner}'")
    return branch[inner]


def _given_id(obj: Mapping[str, Any]) -> str | None:
    """The explicit task id if usable; raises for an unusable one."""
    if "task_id" not in obj or obj["task_id"] is None:
        return None
    tid = obj["task_id"]
    if isinstance(tid, bool) or not isinstance(tid, (str, int)):
        raise _Invalid(f"task_id must be a string or integer, got {type(tid).__name__}")
    text = str(tid).strip()
    if not text:
        raise _Invalid("task_id is empty")
    if len(text) > MAX_TASK_ID_CHARS:
        raise _Invalid(f"task_id longer than {MAX_TASK_ID_CHARS} characters")
    return text


def _fields(obj: Mapping[str, Any], max_chars: int) -> tuple[str | None, str | None, bool]:
    unknown = sorted(set(obj) - TOP_KEYS)
    if unknown:
        raise _Invalid(f"unknown keys: {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    if obj.get("qa") is not None and obj.get("question") is not None:
        raise _Invalid("both qa.question and question given; use one")
    if obj.get("image_generation") is not None and obj.get("image_prompt") is not None:
        raise _Invalid("both image_generation.prompt and image_prompt given; use one")
    q_raw = _branch(obj, "qa", "question", QA_KEYS) if obj.get("qa") is not None else obj.get("question")
    p_raw = (
        _branch(obj, "image_generation", "prompt", IMAGE_KEYS)
        if obj.get("image_generation") is not None
        else obj.get("image_prompt")
    )
    q_name = "qa.question" if obj.get("qa") is not None else "question"
    p_name = "image_generation.prompt" if obj.get("image_generation") is not None else "image_prompt"
    question = _text_field(q_raw, q_name, max_chars)
    prompt = _text_field(p_raw, p_name, max_chars)
    illustrate = obj.get("illustrate")
    if illustrate is None:
        illustrate = False
    if not isinstance(illustrate, bool):
        raise _Invalid(f"illustrate must be true or false, got {illustrate!r}")
    if question is None and prompt is None:
        raise _Invalid("task has neither a question nor an image prompt")
    if illustrate and question is None:
        raise _Invalid("illustrate needs a question to illustrate")
    return question, prompt, illustrate


def parse_record(obj: Any, raw: str, max_question_chars: int) -> ParsedTask:
    """Validate one decoded record (a JSON line's object or a table row as a dict)."""
    if not isinstance(obj, Mapping):
        kind = type(obj).__name__ if obj is not None else "null"
        return _error_task(raw, None, f"a task must be a JSON object, got {kind}")
    try:
        given = _given_id(obj)
    except _Invalid as exc:
        return _error_task(raw, None, str(exc))
    try:
        question, prompt, illustrate = _fields(obj, max_question_chars)
    except _Invalid as exc:
        return _error_task(raw, given, str(exc))
    h = input_hash(question, prompt, illustrate)
    tid = given or derived_task_id(canonical_json({"q": question, "p": prompt, "i": illustrate}))
    return ParsedTask(tid, question, prompt, illustrate, h, raw, None)


def _error_task(raw: str, task_id: str | None, reason: str) -> ParsedTask:
    # An error task's input hash covers the raw text so fixing the line makes it pending again.
    return ParsedTask(
        task_id or derived_task_id("raw:" + raw), None, None, False, _sha("raw:" + raw), raw, reason
    )


def _clip(raw: str) -> str:
    """Keep ``raw`` bounded: a 10 MB line must not be copied into two tables verbatim."""
    if len(raw) <= MAX_RAW_CHARS:
        return raw
    return raw[:MAX_RAW_CHARS] + f"...[truncated, {len(raw)} characters]"


def decode_line(line: str, line_no: int, max_question_chars: int) -> tuple[Any, ParsedTask]:
    """One JSON line → (decoded object or None, task); ``line_no`` is 1-based, used in reasons."""
    text = line.rstrip("\r\n")
    bad = first_surrogate(text)
    if bad is not None:  # bytes that are not UTF-8, kept by the reader's surrogateescape
        byte = escaped_byte(bad)
        raw = _clip(text.encode("utf-8", "backslashreplace").decode("utf-8"))
        where = f"byte 0x{byte:02x}" if byte is not None else f"\\u{ord(bad):04x}"
        column = text.index(bad) + 1
        return None, _error_task(
            raw, None, f"line {line_no}: not valid UTF-8 ({where} at column {column}); save the file as UTF-8"
        )
    raw = _clip(text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, _error_task(
            raw, None, f"line {line_no}: malformed JSON: {exc.msg} at column {exc.colno}"
        )
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, 100k nested brackets
        return None, _error_task(raw, None, f"line {line_no}: malformed JSON: {exc}"[:500])
    bad = first_surrogate(obj)
    if bad is not None:  # a JSON escape such as "\ud800": no hash, Arrow batch or table can hold it
        return None, _error_task(raw, None, f"line {line_no}: {surrogate_reason(bad)}")
    task = parse_record(obj, raw, max_question_chars)
    if task.parse_error:
        task = ParsedTask(**{**task.as_dict(), "parse_error": f"line {line_no}: {task.parse_error}"})
    return obj, task


def number_repeats(tasks: list[ParsedTask], given_ids: set[str]) -> list[ParsedTask]:
    """Give identical id-less tasks distinct ids by occurrence: ``t-x``, ``t-x-2``, ..."""
    seen: Counter[str] = Counter()
    out = []
    for t in tasks:
        if t.task_id in given_ids:
            out.append(t)
            continue
        seen[t.task_id] += 1
        n = seen[t.task_id]
        out.append(t if n == 1 else ParsedTask(**{**t.as_dict(), "task_id": f"{t.task_id}-{n}"}))
    return out


def check_unique(tasks: Iterable[ParsedTask], source: str = "the task input") -> None:
    """Raise :class:`TaskInputError` naming every duplicated task id."""
    counts = Counter(t.task_id for t in tasks)
    dupes = sorted(tid for tid, n in counts.items() if n > 1)
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:10]) + (
            f" and {len(dupes) - 10} more" if len(dupes) > 10 else ""
        )
        raise TaskInputError(
            f"{source}: duplicate task_id {shown}; task ids must be unique within one input "
            "(results are merged on task_id)"
        )


def _explicit_ids(records: list[tuple[Any, ParsedTask]]) -> set[str]:
    ids = set()
    for obj, task in records:
        if (
            isinstance(obj, Mapping)
            and obj.get("task_id") is not None
            and str(obj["task_id"]).strip() == task.task_id
        ):
            ids.add(task.task_id)
    return ids


def parse_lines(
    lines: Iterable[str], max_question_chars: int, source: str = "the task input"
) -> list[ParsedTask]:
    """Parse JSON lines (blank lines are skipped); raises only for duplicate task ids."""
    return parse_files([("", lines)], max_question_chars, source)


def parse_files(
    files: Iterable[tuple[str, Iterable[str]]], max_question_chars: int, source: str = "the task input"
) -> list[ParsedTask]:
    """Parse several ``(label, lines)`` inputs as one task set; a non-empty label (the file
    name) prefixes line-level reasons, e.g. ``"b.jsonl line 3: ..."``."""
    records: list[tuple[Any, ParsedTask]] = []
    for label, lines in files:
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            obj, task = decode_line(line, i, max_question_chars)
            if label and task.parse_error:
                task = ParsedTask(**{**task.as_dict(), "parse_error": f"{label} {task.parse_error}"})
            records.append((obj, task))
    return finish([t for _, t in records], _explicit_ids(records), source)


def parse_rows(
    rows: Iterable[Mapping[str, Any]], max_question_chars: int, source: str = "the task table"
) -> list[ParsedTask]:
    """Parse table rows: null columns are absent fields; columns that are not task fields
    (e.g. a table's own bookkeeping such as ``input_hash``) are ignored, since a table's
    schema is fixed for all rows rather than a per-line typo."""
    records = [parse_row(row, max_question_chars) for row in rows]
    return finish([t for t, _ in records], {t.task_id for t, given in records if given}, source)


def parse_row(row: Mapping[str, Any], max_question_chars: int) -> tuple[ParsedTask, bool]:
    """One table row → (task, whether its id was given explicitly). Null columns are absent
    fields; columns that are not task fields are ignored (a table's schema is fixed for all
    rows, not a per-line typo). The Spark reader (``tasks/input.py``) calls this per row."""
    obj = {k: v for k, v in row.items() if v is not None and k in TOP_KEYS}
    raw = _clip(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))
    task = parse_record(obj, raw, max_question_chars)
    return task, bool(_explicit_ids([(obj, task)]))


def finish(tasks: list[ParsedTask], given_ids: set[str], source: str) -> list[ParsedTask]:
    tasks = number_repeats(tasks, given_ids)
    check_unique(tasks, source)
    return tasks
