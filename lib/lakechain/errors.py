"""User-facing errors: failures a user causes or can fix, printed by the CLI as one line.

Every message names what is wrong and the fix, so the CLI prints ``lakechain: <message>``
and exits 2 instead of a traceback (``--debug`` shows it). No pyspark import here:
``lakechain --help`` and ``lakechain ask`` must not load Spark.
"""

from __future__ import annotations


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


def is_user_error(exc: BaseException) -> bool:
    """True for failures the user fixes (their message says how), False for bugs."""
    return isinstance(exc, (UserError, FileNotFoundError))
