"""The method interface, and the methods that add nothing: prompt tuning, linear probing, full tuning."""

from __future__ import annotations

from ..errors import ConfigError
from ..models import PromptedViT


class Method:
    """A tuning method: its name, and what it adds to a prompted ViT whose backbone is frozen.

    This base adds nothing: with prompts (``prompt.length``) it is VPT / SPT, without them a linear probe.
    The head and the prompts always train; the module puts every other trainable tensor in the
    ``backbone`` group when the backbone's own tensor (pretrained), else in ``added`` (the method's new ones).

    Subclasses override :meth:`attach`.

    Args:
        name: The method's name in run folders, results and the report.
    """

    trains_backbone = False  # every backbone tensor trains (full fine-tuning)

    def __init__(self, name: str):
        self.name = name

    def attach(self, model: PromptedViT) -> None:
        """Add this method's tensors to ``model`` (its pretrained weights are in, its backbone frozen) and
        let the ones it trains have gradients. Called once per run, before fitting and any checkpoint restore."""

    def merge(self, model: PromptedViT) -> None:
        """Fold what this method added into the frozen weights, so that ``model`` computes the same logits
        with the plain ViT's modules and cost (re-parameterisable methods: SSF, RepAdapter)."""
        raise ConfigError(f"method={self.name} does not fold into the backbone's weights; the re-parameterisable "
                          "methods are ssf and repadapter", "method")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FullFinetuning(Method):
    """Every parameter trains (with the recipe's smaller learning rate)."""

    trains_backbone = True
