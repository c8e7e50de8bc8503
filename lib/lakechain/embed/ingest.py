"""Corpus files or a table → document rows plus ingest error rows.

Bad input never crashes a run and never vanishes: every file or line that cannot become a
document becomes an error row (``source, doc_id, reason``) that the embed stage appends
to ``ingest_errors``. Pure functions parse bytes; the thin Spark layer at the bottom lists
files on the driver (cheap ``stat`` only) and reads/parses them on executors.

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


def dedupe(items: list[Parsed]) -> list[Parsed]:
    """Keep the first document per doc_id (input order); later ones become error rows."""
    first: dict[str, str] = {}
    out: list[Parsed] = []
    for it in items:
        if isinstance(it, Document):
            if it.doc_id in first:
                out.append(
                    IngestError(it.source, it.doc_id, f"duplicate doc_id (first seen in {first[it.doc_id]})")
                )
                continue
            first[it.doc_id] = it.source
        out.append(it)
    return out


def ingest_directory(root: str, max_bytes: int) -> list[Parsed]:
    """Whole corpus in one process (tests, small corpora, the benchmark's baseline)."""
    files, errors = list_corpus_files(root)
    items: list[Parsed] = list(errors)
    for rel in files:
        items.extend(read_path(root, rel, max_bytes))
    return dedupe(items)


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


# --- Spark layer ----------------------------------------------------------------------

PARSED_DDL = (
    "kind string, doc_id string, source string, content_hash string, text string, "
    "metadata map<string,string>, reason string, order_key string"
)


def _rows(items: list[Parsed], order_prefix: str) -> list[dict[str, Any]]:
    rows = []
    for i, it in enumerate(items):
        key = f"{order_prefix}\x00{i:010d}"
        if isinstance(it, Document):
            rows.append(
                {
                    "kind": "doc",
                    "doc_id": it.doc_id,
                    "source": it.source,
                    "content_hash": it.content_hash,
                    "text": it.text,
                    "metadata": it.metadata,
                    "reason": None,
                    "order_key": key,
                }
            )
        else:
            rows.append(
                {
                    "kind": "error",
                    "doc_id": it.doc_id,
                    "source": it.source,
                    "content_hash": None,
                    "text": None,
                    "metadata": None,
                    "reason": it.reason,
                    "order_key": key,
                }
            )
    return rows


def read_corpus(spark: Any, settings: Any, tables: Any) -> Any:
    """DataFrame of parsed rows (``PARSED_DDL``): ``kind`` "doc" rows are documents, "error"
    rows carry a ``reason``. Duplicate doc_ids are already turned into error rows.

    ``corpus.path`` is a directory (files are listed on the driver and read on executors —
    on a cluster it must be a path every executor can open, e.g. a /Volumes or /dbfs mount)
    or, when it is not a directory, the name of an existing table.
    """
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    corpus = settings.corpus
    max_bytes = int(corpus.max_document_bytes)
    path = corpus.path
    if os.path.isdir(path):
        root = os.path.abspath(path)
        files, list_errors = list_corpus_files(root)
        n = corpus.partitions or max(1, min(len(files), spark.sparkContext.defaultParallelism * 4))
        listing = spark.createDataFrame([(f,) for f in files], "relpath string").repartition(n)

        def parse(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for pdf in batches:
                rows: list[dict[str, Any]] = []
                for rel in pdf["relpath"]:
                    rows.extend(_rows(list(read_path(root, rel, max_bytes)), rel))
                yield pd.DataFrame(rows, columns=[c.split()[0] for c in PARSED_DDL.split(", ")])

        parsed = listing.mapInPandas(parse, PARSED_DDL)
        if list_errors:
            parsed = parsed.unionByName(
                spark.createDataFrame(_rows(list(list_errors), "\x00listing"), PARSED_DDL)
            )
    elif (src := tables.read_input(path)) is not None:
        cols = set(src.columns)
        id_col = "doc_id" if "doc_id" in cols else "id" if "id" in cols else None
        if id_col is None or "text" not in cols:
            raise ValueError(
                f"corpus table {path!r} needs columns doc_id (or id) and text; has {sorted(cols)}"
            )
        select = [F.col(id_col).cast("string").alias("doc_id"), F.col("text").cast("string").alias("text")]
        if "metadata" in cols:
            select.append(F.col("metadata"))
        keyed = src.select(*select).withColumn("_key", F.monotonically_increasing_id())

        def parse_rows(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for pdf in batches:
                rows = []
                for rec in pdf.to_dict("records"):
                    meta = rec.get("metadata")
                    if meta is not None and not isinstance(meta, dict):
                        rec["metadata"] = dict(meta)
                    item = record_to_parsed(rec, path, max_bytes)
                    rows.extend(_rows([item], f"{int(rec['_key']):020d}"))
                yield pd.DataFrame(rows, columns=[c.split()[0] for c in PARSED_DDL.split(", ")])

        parsed = keyed.mapInPandas(parse_rows, PARSED_DDL)
    else:
        raise FileNotFoundError(
            f"corpus.path {path!r} is neither a directory nor an existing table; "
            "point corpus.path at a folder of .txt/.md/.html/.jsonl files or a table name"
        )
    # One window over all rows (errors ranked apart from documents) instead of a union of
    # three branches: the corpus is read and parsed once, with a single shuffle.
    is_doc = F.col("kind") == "doc"
    w = Window.partitionBy("doc_id", is_doc).orderBy("order_key")
    ranked = parsed.withColumn("_rn", F.row_number().over(w)).withColumn("_first", F.first("source").over(w))
    dupe = is_doc & (F.col("_rn") > 1)
    return ranked.select(
        F.when(dupe, F.lit("error")).otherwise(F.col("kind")).alias("kind"),
        "doc_id",
        "source",
        F.when(dupe, F.lit(None).cast("string")).otherwise(F.col("content_hash")).alias("content_hash"),
        F.when(dupe, F.lit(None).cast("string")).otherwise(F.col("text")).alias("text"),
        F.when(dupe, F.lit(None).cast("map<string,string>")).otherwise(F.col("metadata")).alias("metadata"),
        F.when(dupe, F.concat(F.lit("duplicate doc_id (first seen in "), F.col("_first"), F.lit(")")))
        .otherwise(F.col("reason"))
        .alias("reason"),
        "order_key",
    )
