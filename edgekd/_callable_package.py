"""`edgekd.distill(...)` and `edgekd.export(...)` are API functions (edgekd/api.py) and also the names of packages:
importing any submodule (`edgekd.distill.recipe`) binds the package to the attribute `edgekd.distill`, replacing
the function. So those two packages are made callable, forwarding to the API function of their name."""

from __future__ import annotations

import sys
from types import ModuleType


class _CallablePackage(ModuleType):
    def __call__(self, *args: object, **kwargs: object) -> object:
        from edgekd import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(package_name: str) -> None:
    """Make the package `package_name` (edgekd.distill or edgekd.export) call edgekd.api's function of its name."""
    sys.modules[package_name].__class__ = _CallablePackage
