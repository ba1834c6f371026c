"""Prompted ViTs. Knows nothing of datasets or training loops."""

from .prompted_vit import PromptedViT
from .prompts import Prompts

__all__ = ["PromptedViT", "Prompts"]
