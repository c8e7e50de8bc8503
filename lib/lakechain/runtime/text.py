"""User text files, and strings UTF-8 cannot store: lone surrogates.

Every text input (tasks, eval questions, config) is opened by :func:`open_text`: a file
saved by a Windows editor starts with a UTF-8 byte-order mark and ends lines with CRLF, and
must read as the same lines as one without (corpus files decode their bytes the same way,
``embed.ingest.decode_utf8``).

They reach Python two ways: a JSON line may escape one (``"\\ud800"``), and a file read with
``errors="surrogateescape"`` keeps each undecodable byte as one (U+DC80..U+DCFF). Either
crashes the first hash, Arrow conversion or Delta write far from the input line, so the
parsers find them first and turn the line into an error row that names it.
"""

from __future__ import annotations

import os
import re
from typing import IO, Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def open_text(path: str | os.PathLike[str], errors: str = "strict") -> IO[str]:
    """A UTF-8 text file for reading, without its byte-order mark, CRLF and CR read as
    ``\n``. ``errors="surrogateescape"`` keeps bytes that are not UTF-8, for a per-line reason."""
    return open(path, encoding="utf-8-sig", errors=errors, newline=None)


def first_surrogate(value: Any) -> str | None:
    """The first lone surrogate in ``value`` (a string, or dicts/lists of them, keys too)."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        return m.group() if m else None
    if isinstance(value, dict):
        value = [x for kv in value.items() for x in kv]
    if isinstance(value, list):
        for item in value:
            found = first_surrogate(item)
            if found is not None:
                return found
    return None


def escaped_byte(char: str) -> int | None:
    """The byte a ``surrogateescape`` decode kept as ``char``, or None for a JSON escape."""
    code = ord(char)
    return code - 0xDC00 if 0xDC80 <= code <= 0xDCFF else None


def surrogate_reason(char: str) -> str:
    """Why a line holding ``char`` is refused, and the fix."""
    return f"a lone surrogate escape \\u{ord(char):04x} is not valid Unicode; fix the text"
