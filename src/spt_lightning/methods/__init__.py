"""Parameter-efficient tuning methods: what each adds to the frozen ViT and what trains.

A method is a ``_target_`` node (``method: {_target_: ..., name: ...}`` in ``conf/method/<name>.yaml``)
built into a :class:`Method`; ``train`` attaches it once the pretrained weights are in. Prompts are the
prompted ViT's own (``prompt.length``; ``null``: none), so every method with prompts takes any
``prompt.init``, SPT's prototypes included. A new method is one module here and one YAML.
"""

from .adapter import Adapter
from .base import FullFinetuning, Method
from .bitfit import BitFit
from .fact import FacT
from .gated_prompts import GatedPrompts
from .kv_prompts import KVPrompts
from .lora import LoRA
from .repadapter import RepAdapter
from .ssf import SSF

__all__ = ["Adapter", "BitFit", "FacT", "FullFinetuning", "GatedPrompts", "KVPrompts", "LoRA", "Method",
           "RepAdapter", "SSF"]
