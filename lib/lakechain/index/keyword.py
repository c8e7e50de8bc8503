"""Keyword (BM25) side of an index build, beside the FAISS index: pure, no Spark.

Why: dense MiniLM vectors blur exact terms (``AssertionError``, ``nonlocal``, ``a // b``)
that users type verbatim; BM25 over the same chunk rows finds them. The index is
``bm25s`` (sparse-matrix BM25, Lucene scoring) over a code-aware tokenizer:

* identifiers stay whole (``get_nowait``, ``assertionerror``) and are also split on ``_``
  and camelCase (``get``, ``nowait``, ``assertion``, ``error``), so both the exact name and
  the words in it match;
* Python operators are tokens (``**``, ``//``, ``<<``, ``@``, ``!=``); ``|``, ``-``, ``=``
  and ``:`` are not, because pydoc and Markdown use them for layout;
* lower case, Lucene's 33 English stopwords dropped, words Snowball-stemmed (PyStemmer)
  so ``keywords`` finds ``keyword`` and ``parsing`` finds ``parse``.

Measured on ``data/eval`` (docs/eval.md): stemming lifts keyword hit@1 from 0.853 to 0.880
and hybrid from 0.933 to 0.947; NLTK's longer stopword list did not help hybrid.

On disk it lives in ``<build>/keyword/`` (bm25s's own files); ``save`` returns their
relative paths for the build manifest, which records their sha256 like the other files.
Row ``i`` of the keyword index is row ``i`` of ``ids.parquet`` (sorted by ``vector_id``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

KEYWORD_DIR = "keyword"
TOKENIZER = "code-v2-snowball"
"""Bump when tokenization changes: builds made with another tokenizer are rebuilt."""
K1 = 1.5
B = 0.75
METHOD = "lucene"

_TOKEN = re.compile(r"\w+|\*\*=?|//=?|<<=?|>>=?|->|[<>!]=|==|:=|[+*/%@&^~<>]")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@cache
def _bm25s() -> Any:
    """``bm25s``, imported on first use (it loads scipy), with the DEBUG level it sets on its
    own logger at import put back to WARNING, so CLI output carries no index-build chatter."""
    import logging

    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@cache
def stopwords() -> frozenset[str]:
    """Lucene's English stopwords, as bm25s ships them (imported on first use: bm25s loads scipy)."""
    _bm25s()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@cache
def _stem() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


class KeywordManifest(TypedDict):
    """The ``keyword`` section of a build manifest."""

    library: str
    library_version: str
    stemmer: str
    method: str
    k1: float
    b: float
    tokenizer: str
    count: int
    files: list[str]


def tokenize(text: str | None) -> list[str]:
    """Tokens of ``text`` for BM25 (see module docstring); used for chunks and queries alike."""
    if not text:
        return []
    stop, stem = stopwords(), _stem()
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if not (tok[0].isalnum() or tok[0] == "_"):
            out.append(tok)
            continue
        low = tok.lower()
        if low not in stop:
            out.append(stem(low))
        parts = [p.lower() for piece in tok.split("_") for p in _CAMEL.findall(piece)]
        if len(parts) > 1:
            out.extend(stem(p) for p in parts if len(p) > 1 and not p.isdigit() and p not in stop)
    return out


class KeywordIndex:
    """BM25 over a fixed list of texts; results are positions in that list."""

    def __init__(self, model: Any, count: int) -> None:
        self.model = model
        self.count = count

    @classmethod
    def build(cls, texts: Sequence[str | None]) -> KeywordIndex:
        bm25s = _bm25s()
        model = bm25s.BM25(k1=K1, b=B, method=METHOD)
        if texts:
            model.index([tokenize(t) for t in texts], show_progress=False)
        return cls(model, len(texts))

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per query as (scores (n,k) float32, positions (n,k) int64), best first.

        Texts sharing no token with the query are not results: their slots hold position -1
        and score 0, so a question of only unknown words retrieves nothing.
        """
        n, k = len(queries), max(1, int(k))
        scores = np.zeros((n, k), np.float32)
        positions = np.full((n, k), -1, np.int64)
        if n == 0 or self.count == 0:
            return scores, positions
        vocab = self.model.vocab_dict
        tokens = [[t for t in tokenize(q) if t in vocab] for q in queries]
        asked = [i for i, t in enumerate(tokens) if t]
        if not asked:
            return scores, positions
        width = min(k, self.count)
        docs, found = self.model.retrieve(
            [tokens[i] for i in asked], k=width, show_progress=False, n_threads=0
        )
        rows = np.asarray(asked)
        hit = found > 0
        scores[rows, :width] = np.where(hit, found, 0)
        positions[rows, :width] = np.where(hit, docs, -1)
        return scores, positions

    def save(self, build_dir: str | os.PathLike[str]) -> list[str]:
        """Write into ``<build_dir>/keyword/``; returns the file paths relative to ``build_dir``."""
        target = Path(build_dir) / KEYWORD_DIR
        target.mkdir(parents=True, exist_ok=True)
        self.model.save(str(target), show_progress=False)
        return sorted(f"{KEYWORD_DIR}/{p.name}" for p in target.iterdir() if p.is_file())

    @classmethod
    def load(cls, build_dir: str | os.PathLike[str], count: int) -> KeywordIndex:
        bm25s = _bm25s()
        model = bm25s.BM25.load(str(Path(build_dir) / KEYWORD_DIR), show_progress=False, verbosity=0)
        indexed = int(model.scores.get("num_docs", count)) if count else 0
        if indexed != count:
            raise ValueError(f"the keyword index holds {indexed} texts, the build {count} rows")
        return cls(model, count)


def write_index(build_dir: Path, texts: Sequence[str | None]) -> KeywordManifest:
    """Build and save the keyword side of a build; its manifest section (``store.save_build``)."""
    bm25s = _bm25s()
    files = KeywordIndex.build(texts).save(build_dir)
    return KeywordManifest(
        library="bm25s",
        library_version=bm25s.__version__,
        stemmer="snowball-english",
        method=METHOD,
        k1=K1,
        b=B,
        tokenizer=TOKENIZER,
        count=len(texts),
        files=files,
    )


def is_current(manifest: dict[str, Any] | None) -> bool:
    """True when a build manifest has a keyword side made by this tokenizer.

    The index stage rebuilds builds that are not (older builds have no keyword side).
    """
    section = (manifest or {}).get("keyword") or {}
    return section.get("tokenizer") == TOKENIZER and section.get("method") == METHOD
