"""Prompted ViTs. Knows nothing of datasets or training loops."""

from .prompted_vit import ATTENTION, PromptedViT
from .prompts import ExtraTokens, Prompts

__all__ = ["ATTENTION", "ExtraTokens", "PromptedViT", "Prompts"]
