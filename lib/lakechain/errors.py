"""Errors a user causes and can fix: the CLI prints their message in one line, no traceback.

No pyspark import here: the CLI must classify errors without starting Spark.
"""

from __future__ import annotations

from lakechain.config import ConfigError


class UserError(ConfigError):
    """A problem the user fixes (input, table, lock, schema); the message says how."""


class TableNotFoundError(UserError, LookupError):
    """A stage needs a table an earlier stage writes."""


class SchemaMismatchError(UserError):
    """A write whose columns or types differ from the table's (names the columns)."""


class StorageBusyError(UserError):
    """Another Lakechain process holds this storage root's metastore."""
