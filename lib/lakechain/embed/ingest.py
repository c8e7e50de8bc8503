"""Corpus files or a table → document rows plus ingest error rows.

Bad input never crashes a run and never vanishes: every file or line that cannot become a
document becomes an error row (``source, doc_id, reason``) that the embed stage appends
to ``ingest_errors``. Pure functions parse bytes; ``corpus.py`` lists files on the driver
(cheap ``stat`` only) and reads/parses them on executors.

Document ids (stable across runs, independent of the storage root):

* ``.txt`` / ``.md`` / ``.html`` / ``.htm``: the file's path relative to the corpus root,
  with ``/`` separators (``guides/spark.md``);
* ``.jsonl``: the line's ``id`` field, as a string (one document per line);
* a table: its ``doc_id`` column (or ``id``).

Duplicate ids keep the first occurrence in (source path, line) order and error-row the
rest. Documents larger than ``corpus.max_document_bytes`` are error-rowed; anything
smaller (a 10 MB book included) is chunked normally.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from lakechain.runtime.text import first_surrogate, surrogate_reason

TEXT_EXTENSIONS = {".txt": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}
JSONL_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl"}
STAGE = "ingest"


@dataclass(frozen=True)
class Document:
    doc_id: str
    source: str
    content_hash: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestError:
    source: str
    doc_id: str | None
    reason: str
    stage: str = STAGE


Parsed = Document | IngestError


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- text cleaning --------------------------------------------------------------------


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; block elements become line/paragraph breaks."""

    _SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    _PARA = {
        "p",
        "div",
        "section",
        "article",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "blockquote",
        "pre",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "figure",
    }
    _LINE = {"br", "li", "tr", "dt", "dd", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        if tag in self._PARA:
            self.parts.append("\n\n")
        elif tag in self._LINE:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._LINE:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        if tag in self._PARA:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(data)


def normalize_text(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def html_to_text(html: str) -> tuple[str, str]:
    """(visible text, title) of an HTML document, without script/style content."""
    p = _HTMLText()
    p.feed(html)
    p.close()
    text = "".join(p.parts)
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return normalize_text(text), " ".join("".join(p.title).split())


def decode_utf8(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason): binary and non-UTF-8 files are rejected, not guessed."""
    if b"\x00" in data[:8192]:
        return None, "binary file (NUL bytes): not a text document"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 text at byte {exc.start} (binary or another encoding)"


# --- parsing (pure) -------------------------------------------------------------------


def _doc(
    doc_id: str, source: str, text: str, metadata: dict[str, str], max_bytes: int, where: str | None = None
) -> Parsed:
    """A document, or an error row (at ``where``, default ``source``) when empty or too large."""
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        return IngestError(
            where or source, doc_id, f"document is {size} bytes, over corpus.max_document_bytes={max_bytes}"
        )
    if not text.strip():
        return IngestError(where or source, doc_id, "empty document (no text after cleaning)")
    return Document(doc_id, source, content_hash(text), text, metadata)


def _str_metadata(meta: Any) -> dict[str, str] | None:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        return None
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in meta.items()}


def parse_jsonl_line(line: bytes | str, source: str, lineno: int, max_bytes: int) -> Parsed | None:
    """One jsonl line → a document or an error row; blank lines give None."""
    where = f"{source}:{lineno}"
    if isinstance(line, bytes):
        decoded, reason = decode_utf8(line)
        if decoded is None:
            return IngestError(where, None, f"line {lineno}: {reason}")
        line = decoded
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        return IngestError(where, None, f"line {lineno}: malformed JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(rec, dict):
        return IngestError(where, None, f"line {lineno}: expected a JSON object, got {type(rec).__name__}")
    bad = first_surrogate(rec)
    if bad is not None:  # would crash the content hash and the Arrow batch of the whole file
        return IngestError(where, None, f"line {lineno}: {surrogate_reason(bad)}")
    raw_id = rec.get("id", rec.get("doc_id"))
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()) or isinstance(raw_id, (dict, list)):
        return IngestError(where, None, f"line {lineno}: missing or invalid 'id'")
    doc_id = str(raw_id)
    text = rec.get("text")
    if not isinstance(text, str):
        return IngestError(where, doc_id, f"line {lineno}: 'text' must be a string")
    meta = _str_metadata(rec.get("metadata"))
    if meta is None:
        return IngestError(where, doc_id, f"line {lineno}: 'metadata' must be an object")
    meta.setdefault("path", source)
    meta.setdefault("line", str(lineno))
    return _doc(doc_id, source, normalize_text(text), meta, max_bytes, where)


def parse_file_bytes(relpath: str, data: bytes, max_bytes: int) -> list[Parsed]:
    """Parse one whole text/markdown/html file (already read) into a document or an error."""
    ext = os.path.splitext(relpath)[1].lower()
    kind = TEXT_EXTENSIONS.get(ext)
    if kind is None:
        return [IngestError(relpath, relpath, f"unsupported file type {ext or '(none)'}")]
    text, reason = decode_utf8(data)
    if text is None:
        return [IngestError(relpath, relpath, reason or "unreadable")]
    meta = {"path": relpath, "format": kind}
    if kind == "html":
        text, title = html_to_text(text)
        if title:
            meta["title"] = title
    else:
        text = normalize_text(text)
    return [_doc(relpath, relpath, text, meta, max_bytes)]


def read_path(root: str, relpath: str, max_bytes: int) -> Iterator[Parsed]:
    """Read and parse one corpus file; I/O problems become error rows (runs on executors)."""
    path = os.path.join(root, relpath)
    ext = os.path.splitext(relpath)[1].lower()
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            yield IngestError(relpath, relpath, "not a regular file")
            return
        if ext in JSONL_EXTENSIONS:
            with open(path, "rb") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if len(line) > max_bytes * 2 + 1024:  # JSON escaping can double the text size
                        yield IngestError(
                            f"{relpath}:{lineno}",
                            None,
                            f"line {lineno}: {len(line)} bytes, over corpus.max_document_bytes",
                        )
                        continue
                    item = parse_jsonl_line(line, relpath, lineno, max_bytes)
                    if item is not None:
                        yield item
            return
        size = st.st_size
        if size > max_bytes * 4 + 1024:  # HTML markup may shrink a lot; refuse only clearly huge files
            yield IngestError(
                relpath, relpath, f"file is {size} bytes, over corpus.max_document_bytes={max_bytes}"
            )
            return
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        yield IngestError(relpath, relpath, f"unreadable: {exc.strerror or exc} ({type(exc).__name__})")
        return
    yield from parse_file_bytes(relpath, data, max_bytes)


def list_corpus_files(root: str) -> tuple[list[str], list[IngestError]]:
    """Relative paths of candidate files (sorted) + errors for unreadable/unsupported entries.

    Hidden files and directories (``.name``) are skipped on purpose (editor/VCS files).
    """
    files: list[str] = []
    errors: list[IngestError] = []

    def onerror(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename or root, root).replace(os.sep, "/")
        errors.append(IngestError(rel, None, f"unreadable directory: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            ext = os.path.splitext(name)[1].lower()
            if ext in TEXT_EXTENSIONS or ext in JSONL_EXTENSIONS:
                files.append(rel)
            else:
                errors.append(
                    IngestError(
                        rel,
                        rel,
                        f"unsupported file type {ext or '(none)'}; expected .txt, .md, .html or .jsonl",
                    )
                )
    return sorted(files), errors


def ingest_directory(root: str, max_bytes: int) -> list[Parsed]:
    """Whole corpus parsed in one process (tests, the benchmark's baseline); duplicate ids are
    left in: the Spark reader (``corpus.py``) is the one place that resolves them."""
    files, errors = list_corpus_files(root)
    items: list[Parsed] = list(errors)
    for rel in files:
        items.extend(read_path(root, rel, max_bytes))
    return items


def record_to_parsed(rec: dict[str, Any], source: str, max_bytes: int) -> Parsed:
    """A row of an input table (doc_id|id, text, optional metadata) → document or error."""
    raw_id = rec.get("doc_id", rec.get("id"))
    if raw_id is None or not str(raw_id).strip():
        return IngestError(source, None, "row without doc_id/id")
    doc_id = str(raw_id)
    text = rec.get("text")
    if not isinstance(text, str):
        return IngestError(source, doc_id, "'text' is null or not a string")
    meta = _str_metadata(rec.get("metadata"))
    if meta is None:
        meta = {}
    return _doc(doc_id, source, normalize_text(text), meta, max_bytes)
