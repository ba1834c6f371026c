"""Prototype initialisation (SPT): token capture, strategies, cache, and the Lightning callback."""

from .callback import PrototypeInit
from .strategies import STRATEGIES, PrototypeError

__all__ = ["STRATEGIES", "PrototypeError", "PrototypeInit"]
