"""Every exception ferlite raises on purpose, in one place, under one root: FerliteError.

A caller that only wants "did ferlite refuse this?" catches FerliteError; the subclasses say what
was refused, for callers that act differently on each.
"""

from __future__ import annotations


class FerliteError(Exception):
    """The root of every error ferlite raises on purpose (bad input, a refused model, ...)."""


class ConversionError(FerliteError):
    """The TFLite converter refused the model."""
