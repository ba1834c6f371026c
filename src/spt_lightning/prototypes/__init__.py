"""Prototype initialisation (SPT): token capture, the strategies' records, cache, and the Lightning callback.

``PrototypeInit`` (Lightning) is imported on first use, so that reading a strategy's record
(``prototypes.strategies``) does not load Lightning."""

from .errors import PrototypeError

__all__ = ["STRATEGIES", "PrototypeError", "PrototypeInit"]


def __getattr__(name: str):
    if name == "PrototypeInit":
        from .callback import PrototypeInit

        return PrototypeInit
    if name == "STRATEGIES":
        from .strategies import STRATEGIES

        return STRATEGIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
