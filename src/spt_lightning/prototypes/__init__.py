"""Prototype initialisation (SPT): token capture, the strategies' records and the cache. The Lightning
callback that runs them before training is ``callbacks.PrototypeInit``."""

from .errors import PrototypeError

__all__ = ["STRATEGIES", "PrototypeError"]


def __getattr__(name: str):
    if name == "STRATEGIES":  # on first use: reading the errors does not load the strategies' torch code
        from .strategies import STRATEGIES

        return STRATEGIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
