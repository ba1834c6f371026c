"""The project's Lightning callbacks, each reached from a config's ``_target_`` (``conf/callbacks/``,
``conf/init/``): SPT's prototype init, an EMA of the trainable tensors, the prompt-token analysis and the
learning-rate monitor. A class moved here from elsewhere keeps its old ``_target_`` working in saved run
folders (``settings.MOVED_TARGETS``)."""

from .ema import TrainableEMA
from .learning_rates import LearningRates
from .prompt_analysis import PromptAnalysis
from .prototype_init import PrototypeInit

__all__ = ["LearningRates", "PromptAnalysis", "PrototypeInit", "TrainableEMA"]
