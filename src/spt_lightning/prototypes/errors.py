"""The prototype-init error, importable by every module of the package (capture, strategies, VIPAMIN)."""

from ..errors import SptError


class PrototypeError(SptError, ValueError):
    """Prototypes cannot be computed as configured; the message says what to change."""
