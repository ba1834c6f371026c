"""LoRA (Hu et al., ICLR 2022) through Hugging Face ``peft``: low-rank updates ``B A`` beside the frozen
attention projection ``qkv`` of every block (``B = 0`` at init, so the model starts as the frozen one)."""

from __future__ import annotations

from ..errors import ConfigError, check_number
from ..models import PromptedViT
from .base import Method


class LoRA(Method):
    """peft's LoRA on the ViT's linear layers named in ``targets``; the LoRA tensors and the head train.

    Args:
        name: The method's name.
        rank: r, the rank of each update (8 is the ViT default of PETL_Vision and NOAH's LoRA rows).
        alpha: The update is scaled by ``alpha / rank``.
        dropout: Dropout on the LoRA branch's input.
        targets: Module names (suffixes) that get an update: timm's ``qkv`` (LoRA's W_q, W_k, W_v in
            one matrix), ``proj``, ``fc1``, ``fc2``.
    """

    def __init__(self, name: str = "lora", rank: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 targets: tuple[str, ...] | list[str] = ("qkv",)):
        super().__init__(name)
        self.rank = check_number("method.rank", rank, 1, integer=True)
        self.alpha = check_number("method.alpha", alpha, 0, low_open=True)
        self.dropout = check_number("method.dropout", dropout, 0, 1)
        self.targets = list(targets)

    def attach(self, model: PromptedViT) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as err:
            raise ConfigError(f"method={self.name} needs Hugging Face peft ({err}); pip install "
                              f"'spt-lightning[peft]'", "method") from None
        config = LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=self.targets, bias="none")
        try:
            inject_adapter_in_model(config, model.vit)
        except ValueError as err:  # no module of that name
            raise ConfigError(f"method.targets={self.targets}: {err}", "method.targets") from None
