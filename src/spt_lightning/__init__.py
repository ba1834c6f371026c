"""spt-lightning: Self-Prompt Tuning (SPT) and VPT for frozen Vision Transformers."""

__version__ = "0.1.0"
