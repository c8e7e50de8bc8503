"""User-facing errors: failures a user causes or can fix, printed by the CLI as one line.

Every message names what is wrong and the fix, so the CLI prints ``lakechain: <message>``
and exits 2 instead of a traceback (``--debug`` shows it). No pyspark import here:
``lakechain --help`` and ``lakechain ask`` must not load Spark, so errors defined in the
Spark layer are recognised by their qualified class name instead of by import.
"""

from __future__ import annotations


class UserError(Exception):
    """Base class of failures whose message tells the user how to fix them."""


class ConfigError(UserError, ValueError):
    """Any configuration problem; the message names the key and the fix."""


class StorageRootError(UserError):
    """``storage.root`` (or ``storage.volume``) cannot hold the tables: a file, or not writable."""


class SqlError(UserError):
    """``lakechain sql``: the query does not parse or names a table or column that does not exist."""


class EndpointError(UserError):
    """A model endpoint cannot be reached or refuses the credentials; names the URL."""


# Raised by modules that import pyspark (the storage layer). Matching by name keeps this
# module import-free; tests/unit/test_errors.py checks that each name still exists.
SPARK_LAYER_USER_ERRORS = frozenset(
    {
        "lakechain.storage.tables.TableNotFoundError",
        "lakechain.storage.delta_schema.SchemaMismatchError",
    }
)


def is_user_error(exc: BaseException) -> bool:
    """True for failures the user fixes (their message says how), False for bugs."""
    if isinstance(exc, (UserError, FileNotFoundError)):
        return True
    return any(f"{c.__module__}.{c.__qualname__}" in SPARK_LAYER_USER_ERRORS for c in type(exc).__mro__)
