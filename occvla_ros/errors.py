"""Errors the project raises on bad input: each one carries a message a user can act on.

The ``occvla`` command and the ROS nodes catch :class:`OccvlaError` and print its message instead
of a stack trace; anything else escaping is a bug.
"""


class OccvlaError(Exception):
    """Base class for errors caused by input, configuration or files, not by a bug."""


class ConfigError(OccvlaError, ValueError):
    """A configuration value, parameter or command-line argument is invalid."""


class DataError(OccvlaError):
    """A dataset file is missing, truncated or malformed. The message names the file."""


class CheckpointError(OccvlaError):
    """A checkpoint directory is missing, incomplete, or does not match the requested model."""


class MetaActionParseError(OccvlaError, ValueError):
    """A text is not exactly one meta-action of the vocabulary."""
