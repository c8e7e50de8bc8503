"""Ingest: every bad input becomes an error row with a reason; good input becomes stable documents."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

from lakechain.embed import ingest
from lakechain.embed.ingest import (
    Document,
    IngestError,
    content_hash,
    html_to_text,
    ingest_directory,
    list_corpus_files,
    parse_jsonl_line,
    read_path,
    record_to_parsed,
)

MAX = 1_000_000


def split(items):
    docs = [i for i in items if isinstance(i, Document)]
    errs = [i for i in items if isinstance(i, IngestError)]
    return docs, errs


def test_text_markdown_html_documents(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Hello world.\r\nSecond line.\n\n\n\nNew paragraph.  \n")
    (tmp_path / "sub" / "b.md").write_bytes("\ufeff# Title\n\nBody text.".encode())
    (tmp_path / "c.html").write_text(
        "<html><head><title>My  Page</title><style>p{color:red}</style>"
        "<script>var x = 'secret';</script></head><body><h1>Heading</h1><p>First &amp; best.</p>"
        "<ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>"
    )
    docs, errs = split(ingest_directory(str(tmp_path), MAX))
    assert errs == []
    by_id = {d.doc_id: d for d in docs}
    assert sorted(by_id) == ["a.txt", "c.html", "sub/b.md"]
    assert by_id["a.txt"].text == "Hello world.\nSecond line.\n\nNew paragraph."
    assert by_id["sub/b.md"].text == "# Title\n\nBody text."  # BOM dropped
    html = by_id["c.html"]
    assert "secret" not in html.text and "color" not in html.text and "enable js" not in html.text
    assert "Heading\n\nFirst & best." in html.text and "one\ntwo" in html.text
    assert html.metadata == {"path": "c.html", "format": "html", "title": "My Page"}
    assert html.content_hash == content_hash(html.text) and len(html.content_hash) == 64
    # stable: same input, same ids and hashes
    again = {d.doc_id: d.content_hash for d in split(ingest_directory(str(tmp_path), MAX))[0]}
    assert again == {d.doc_id: d.content_hash for d in docs}


def test_bad_files_become_error_rows(tmp_path: Path):
    (tmp_path / "empty.txt").write_text("  \n\t\n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.md").write_bytes("na\xefve caf\xe9".encode("latin-1"))
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "noext").write_text("text without extension")
    (tmp_path / "huge.txt").write_text("x" * 2000)
    (tmp_path / "scripts.html").write_text("<script>only code</script>")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing-target.txt")
    (tmp_path / ".hidden.txt").write_text("editor swap file")  # hidden files are skipped on purpose
    docs, errs = split(ingest_directory(str(tmp_path), 1000))
    assert docs == []
    reasons = {e.source: e.reason for e in errs}
    assert set(reasons) == {
        "empty.txt",
        "binary.txt",
        "latin1.md",
        "photo.jpg",
        "noext",
        "huge.txt",
        "scripts.html",
        "dangling.txt",
    }
    assert "empty document" in reasons["empty.txt"] and "empty document" in reasons["scripts.html"]
    assert "binary" in reasons["binary.txt"]
    assert "not valid UTF-8" in reasons["latin1.md"]
    assert "unsupported file type .jpg" in reasons["photo.jpg"] and "(none)" in reasons["noext"]
    assert "over corpus.max_document_bytes=1000" in reasons["huge.txt"]
    assert "unreadable" in reasons["dangling.txt"]
    assert all(e.stage == "ingest" for e in errs)


def test_permission_denied_is_an_error_row(tmp_path: Path, monkeypatch):
    (tmp_path / "secret.txt").write_text("classified")
    real_open = builtins.open

    def guarded_open(path, *a, **k):
        if str(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(ingest, "open", guarded_open, raising=False)
    items = list(read_path(str(tmp_path), "secret.txt", MAX))
    assert len(items) == 1 and isinstance(items[0], IngestError)
    assert "Permission denied" in items[0].reason and items[0].doc_id == "secret.txt"


def test_unreadable_directory_listed_as_error(tmp_path: Path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.txt").write_text("x")
    (tmp_path / "ok.txt").write_text("fine")
    real_scandir = os.scandir

    def guarded(path="."):
        if str(path).endswith("locked"):  # what a chmod 000 directory does for a non-root user
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded)
    files, errs = list_corpus_files(str(tmp_path))
    assert files == ["ok.txt"]
    assert len(errs) == 1 and errs[0].source == "locked" and "unreadable directory" in errs[0].reason


def test_jsonl_lines(tmp_path: Path):
    lines = [
        json.dumps({"id": 1, "text": "One.", "metadata": {"lang": "en", "n": 3}}),
        "",
        '{"id": "2", "text": "Two',  # truncated
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "no id"}),
        json.dumps({"id": "3", "text": None}),
        json.dumps({"id": "4", "text": "Four.", "metadata": "bad"}),
        json.dumps({"id": "5", "text": "   "}),
        json.dumps({"id": "1", "text": "duplicate of one"}),
        json.dumps({"id": "6", "text": "Six."}),
    ]
    (tmp_path / "docs.jsonl").write_bytes(
        ("\n".join(lines) + "\n").encode() + b'{"id": "7", "text": "\xff"}\n'
    )
    docs, errs = split(ingest_directory(str(tmp_path), MAX))
    assert [d.doc_id for d in docs] == ["1", "1", "6"]  # duplicates are resolved by corpus.py
    one = docs[0]
    assert one.metadata == {"lang": "en", "n": "3", "path": "docs.jsonl", "line": "1"}
    assert one.source == "docs.jsonl"
    by_line = {e.source: e.reason for e in errs}
    assert "malformed JSON" in by_line["docs.jsonl:3"]
    assert "expected a JSON object" in by_line["docs.jsonl:4"]
    assert "missing or invalid 'id'" in by_line["docs.jsonl:5"]
    assert "'text' must be a string" in by_line["docs.jsonl:6"]
    assert "'metadata' must be an object" in by_line["docs.jsonl:7"]
    assert "empty document" in by_line["docs.jsonl:8"]
    assert "not valid UTF-8" in by_line["docs.jsonl:11"]
    assert len(errs) == 7


def test_ten_megabyte_document_is_accepted_with_default_limit(tmp_path: Path):
    from lakechain.config import CorpusConfig

    limit = CorpusConfig().max_document_bytes
    para = "Spark reads the table. Delta keeps versions. FAISS searches vectors.\n\n"
    (tmp_path / "book.txt").write_text(para * (10_000_000 // len(para) + 1))
    docs, errs = split(ingest_directory(str(tmp_path), limit))
    assert errs == [] and len(docs[0].text.encode()) > 9_900_000


def test_pure_helpers():
    assert html_to_text("<p>a<br>b</p><p>c</p>") == ("a\nb\n\nc", "")
    assert parse_jsonl_line("   ", "f", 1, MAX) is None
    assert isinstance(record_to_parsed({"id": "x", "text": "t", "metadata": {"k": 1}}, "tbl", MAX), Document)
    err = record_to_parsed({"doc_id": None, "text": "t"}, "tbl", MAX)
    assert isinstance(err, IngestError) and "without doc_id" in err.reason
