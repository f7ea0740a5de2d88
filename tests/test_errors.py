"""One error root: every exception ferlite raises on purpose is a FerliteError, defined in the errors module of
its own package (ferlite.edge.contract.errors, ferlite.train.errors, ferlite.convert.errors)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from helpers import needs_tensorflow

import ferlite.convert
import ferlite.edge
import ferlite.train
from ferlite.edge.contract import errors
from ferlite.edge.contract.errors import FerliteError

# Internal signals that never leave their module (a sink asking the loop to stop, one unusable image, one
# undecodable training face): caught where they are raised, so not part of the public errors.
# Each package's one errors module (the edge's is part of its contract).
ERRORS = {"ferlite.edge": "ferlite.edge.contract.errors", "ferlite.train": "ferlite.train.errors",
          "ferlite.convert": "ferlite.convert.errors"}
INTERNAL = {"StopFeed", "UnusableImage", "FaceError", "_Stopped"}  # _Stopped: fer-watch's SIGTERM, caught in main


def _modules():
    for package in (ferlite.edge, ferlite.train, ferlite.convert):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith(".__main__"):
                yield importlib.import_module(info.name)


@needs_tensorflow
def test_every_ferlite_exception_is_a_ferlite_error_defined_in_its_packages_errors():
    found = {}
    for module in _modules():
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__.startswith("ferlite."):
                found[name] = value
    assert len(found) > 15
    for name, cls in found.items():
        if name in INTERNAL:
            continue
        assert issubclass(cls, FerliteError), f"{cls.__module__}.{name} is not a FerliteError"
        package = ".".join(cls.__module__.split(".")[:2])  # ferlite.edge, ferlite.train or ferlite.convert
        home = ERRORS[package]
        assert cls.__module__ == home, f"{name} is defined in {cls.__module__}, not in {home}"


def test_one_config_error_for_edge_and_train():
    from ferlite.edge.runtime.config import ConfigError as EdgeConfigError
    from ferlite.train.config import ConfigError as TrainConfigError

    assert EdgeConfigError is TrainConfigError is errors.ConfigError
