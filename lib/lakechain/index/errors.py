"""Index errors: one base class so callers can catch every index problem at once.

Named ``Lakechain...`` / ``Index...Error`` rather than ``IndexError`` so the builtin is
never shadowed.
"""

from __future__ import annotations

from lakechain.errors import UserError


class LakechainIndexError(UserError, RuntimeError):
    """Base class of every index failure; each says how to fix it (build, rebuild, re-embed)."""


class IndexNotFoundError(LakechainIndexError, FileNotFoundError):
    """No index build where one was expected (never built, or CURRENT names nothing)."""


class IndexCorruptError(LakechainIndexError):
    """Files present but unreadable or not matching their manifest checksums/counts."""


class IndexMismatchError(LakechainIndexError):
    """The index was built for another embedding model or dimension."""


class IndexStaleError(IndexMismatchError):
    """The index was built from an older version of the chunks table."""


class KeywordIndexMissingError(IndexMismatchError):
    """Keyword search was asked of a build without a (current) keyword side: rebuild it."""


class IndexBuildError(LakechainIndexError):
    """A build cannot proceed (no rows, mixed models, duplicate ids, ...)."""


class DuplicateIdError(IndexBuildError):
    """The same vector id appears twice; merging would silently corrupt the id map."""
