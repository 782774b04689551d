"""Typed errors. Every message says what is wrong and what the user can do about it.

The CLIs catch :class:`McaError` and print its message on one line with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class McaError(Exception):
    """Base class of every error a user can act on."""


class ConfigError(McaError, ValueError):
    """A preset or configuration is unknown, malformed or inconsistent."""


class CheckpointError(McaError):
    """A checkpoint file is missing, corrupt, or does not match the architecture."""


class WeightsMissingError(McaError):
    """A network needs pretrained weights that were not given."""


class ShapeError(McaError, ValueError):
    """A tensor passed to a network has the wrong shape."""


class PromptError(McaError, ValueError):
    """A prompt is empty or longer than the text encoder's context."""
