"""Gated prompt tuning (Yoo et al., ICML 2023, "Improving Visual Prompt Tuning for Self-supervised Vision
Transformers"; code: ryongithub/GatedPromptTuning): shallow prompts that every block but the last
updates only through a learnable gate, ``p <- g * block(p) + (1 - g) * p``, ``g = sigmoid(logit)``."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, check_number
from ..models import PromptedViT
from .base import Method


class PromptGates(nn.Module):
    """One gate logit per block; :meth:`forward` mixes a block's prompt outputs with its prompt inputs."""

    def __init__(self, num_gates: int, init: float):
        super().__init__()
        self.logits = nn.Parameter(torch.full((num_gates,), -float(init)))

    def forward(self, block: int, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        if block >= len(self.logits):
            return after
        gate = self.logits[block].sigmoid()
        return gate * after + (1 - gate) * before


class GatedPrompts(Method):
    """Gated shallow prompts; prompts, gates and head train. The prompts are the prompted ViT's (any
    ``prompt.init``; GatedPT's code: VPT's xavier), with ``prompt.deep=false``.

    Left out of the authors' code: its learnable attention temperature per block, and its pooling over
    prompt and patch tokens (here the backbone's own pooling sees the patch tokens only, as for every method).

    Args:
        name: The method's name.
        gate_init: Every gate logit starts at ``-gate_init`` (their code: ``GATE_INIT``, default 10; its
            README's CUB example uses 5), i.e. the prompts start nearly untouched by the blocks.
    """

    def __init__(self, name: str = "gated_prompts", gate_init: float = 5.0):
        super().__init__(name)
        self.gate_init = check_number("method.gate_init", gate_init, -100, 100, high_open=False)

    def attach(self, model: PromptedViT) -> None:
        if model.prompts is None or model.deep:
            raise ConfigError(f"method={self.name} gates shallow prompts: set prompt.deep=false and a "
                              f"prompt.length", "prompt.deep")
        # (the authors' GATE_NUM = 11 for 12 blocks: the last block's prompt outputs are dropped anyway)
        model.prompt_update = PromptGates(len(model.vit.blocks) - 1, self.gate_init)
