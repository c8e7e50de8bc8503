"""User-facing errors: failures a user causes or can fix, printed by the CLI as one line.

Every message names what is wrong and the fix, so the CLI prints ``lakechain: <message>``
and exits 2 instead of a traceback (``--debug`` shows it). No pyspark import here:
``lakechain --help`` and ``lakechain ask`` must not load Spark.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Base class of failures whose message tells the user how to fix them."""


class ConfigError(UserError, ValueError):
    """Any configuration problem; the message names the key and the fix."""


class StorageRootError(UserError):
    """``storage.root`` (or ``storage.volume``) cannot hold the tables: a file, or not writable."""


class StorageBusyError(UserError):
    """Another Lakechain process holds this storage root's metastore longer than we wait."""


class TableNotFoundError(UserError, LookupError):
    """A stage needs a table an earlier stage writes."""


class SchemaMismatchError(UserError, ValueError):
    """A write whose columns or types differ from the table's (names the columns)."""


class SqlError(UserError):
    """``lakechain sql``: the query does not parse or names a table or column that does not exist."""


class EndpointError(UserError):
    """A model endpoint cannot be reached or refuses the credentials; names the URL."""


class DiskFullError(UserError):
    """The disk under the storage root (or Spark's scratch space) is full."""


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
"""Write errors that say the storage is full, not that anything about the input is wrong."""
_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def disk_full(exc: BaseException) -> bool:
    """True when ``exc`` or anything in its cause chain is a full disk: a Python ``OSError``,
    or a JVM one, which reaches Python only as text inside Spark's error."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in FULL_DISK) or any(m in str(e) for m in _NO_SPACE):
            return True
        e = e.__cause__ or e.__context__
    return False


def is_user_error(exc: BaseException) -> bool:
    """True for failures the user fixes (their message says how), False for bugs."""
    return isinstance(exc, (UserError, FileNotFoundError))
