"""User-facing errors.

Anything a user can cause (bad file, bad config, bad option) raises ``CaloforgeError`` with one line that names the
file, the field and what was expected. The CLI prints that line and exits non-zero, without a traceback.
"""


class CaloforgeError(Exception):
    """An error caused by input the user can fix; its message is shown as one line."""


class DataError(CaloforgeError):
    """A shower file is missing, malformed or inconsistent with the expected geometry."""


class ConfigError(CaloforgeError):
    """A recipe or command-line override is invalid."""
