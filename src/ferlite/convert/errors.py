"""fer-convert's errors, under ferlite's one root (ferlite.edge.contract.errors.FerliteError)."""

from __future__ import annotations

from ferlite.edge.contract.errors import FerliteError


class ConversionError(FerliteError):
    """The TFLite converter refused the model."""


class AgreementError(FerliteError):
    """The converted model disagrees with the Keras model too often; nothing was written."""
