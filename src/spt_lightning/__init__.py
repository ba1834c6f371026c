"""spt-lightning: Self-Prompt Tuning (SPT) and VPT for frozen Vision Transformers."""

from . import resolvers  # noqa: F401  (registers the resolvers the configs use, for every entry point)

__version__ = "0.1.0"
