"""Text inputs saved by a Windows editor (a UTF-8 byte-order mark, CRLF line ends) read as
the same input as the plain UTF-8 file: tasks, corpus files, config and eval questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakechain.config import load_settings
from lakechain.embed.ingest import Document, read_path
from lakechain.eval.metrics import read_questions
from lakechain.runtime.text import open_text
from lakechain.tasks.parse import parse_files

BOM = b"\xef\xbb\xbf"


def windows(text: str) -> bytes:
    """``text`` as Notepad saves it: a byte-order mark, then CRLF line ends."""
    return BOM + text.replace("\n", "\r\n").encode("utf-8")


def both(tmp_path: Path, name: str, text: str) -> tuple[Path, Path]:
    """The same text saved plainly and by a Windows editor, in two folders."""
    plain, win = tmp_path / "plain" / name, tmp_path / "win" / name
    for p, data in ((plain, text.encode("utf-8")), (win, windows(text))):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return plain, win


TASKS = (
    '{"task_id": "t1", "qa": {"question": "What is Delta Lake?"}}\n'
    '{"image_generation": {"prompt": "A lake at dawn"}}\n'
    '{"task_id": "t3", "qa": {"question": "Why \\"CRLF\\"?"}, "illustrate": true}\n'
)


def read_tasks_file(path: Path) -> list[dict]:
    with open_text(path, errors="surrogateescape") as f:
        return [t.as_dict() for t in parse_files([("", f)], 2000, source=str(path))]


def test_tasks_file_with_bom_and_crlf_parses_like_plain_utf8(tmp_path):
    plain, win = both(tmp_path, "tasks.jsonl", TASKS)
    got, want = read_tasks_file(win), read_tasks_file(plain)
    assert got == want
    assert [t["task_id"] for t in got][::2] == ["t1", "t3"]  # the first line keeps its task_id
    assert not any(t["parse_error"] for t in got)
    assert got[2]["question"] == 'Why "CRLF"?'  # no stray \r in a value


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("notes.txt", "First line.\nSecond line.\n\nA new paragraph.\n"),
        ("guide.md", "# Title\n\nBody text.\n\n- one\n- two\n"),
        ("page.html", "<html><head><title>T</title></head>\n<body><p>One.</p>\n<p>Two.</p></body></html>\n"),
        (
            "docs.jsonl",
            '{"id": "a", "text": "Delta Lake stores tables."}\n{"id": "b", "text": "FAISS finds vectors."}\n',
        ),
    ],
)
def test_corpus_file_with_bom_and_crlf_gives_the_same_documents(tmp_path, name, text):
    plain, win = both(tmp_path, name, text)
    want = list(read_path(str(plain.parent), name, 1_000_000))
    got = list(read_path(str(win.parent), name, 1_000_000))
    assert want and all(isinstance(d, Document) for d in got), got
    key = [(d.doc_id, d.content_hash, d.text) for d in got]  # type: ignore[union-attr]
    assert key == [(d.doc_id, d.content_hash, d.text) for d in want]  # type: ignore[union-attr]
    assert not any("\ufeff" in d.text or "\r" in d.text for d in got)  # type: ignore[union-attr]


def test_config_with_bom_and_crlf_loads_like_plain_utf8(tmp_path):
    yaml_text = "storage:\n  root: /tmp/lake-x\ntasks:\n  max_concurrency: 3\n"
    plain, win = both(tmp_path, "conf.yaml", yaml_text)
    got, want = load_settings(win), load_settings(plain)
    assert got.storage.root == want.storage.root == "/tmp/lake-x"
    assert got.tasks.max_concurrency == want.tasks.max_concurrency == 3


def test_eval_questions_with_bom_and_crlf_load_like_plain_utf8(tmp_path):
    lines = [{"id": "q1", "question": "What is Delta Lake?", "expected_docs": ["delta.md"]},
             {"id": "q2", "question": "What is FAISS?", "key_phrase": "similarity search"}]  # fmt: skip
    plain, win = both(tmp_path, "questions.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    got = read_questions(win)
    assert got == read_questions(plain)
    assert [q["id"] for q in got] == ["q1", "q2"]
