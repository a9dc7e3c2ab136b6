"""The one error type of optimkit.data: a user mistake with a readable message."""

from __future__ import annotations


class DataError(ValueError):
    """Bad dataset name, bad file or bad option; the message says what was expected.

    A subclass of ValueError, so callers that catch ValueError keep working; the CLI catches it
    and exits with status 2 without a traceback.
    """
