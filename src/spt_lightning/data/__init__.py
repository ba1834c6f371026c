"""Data: task catalogue, datasets, transforms and the datamodule. Knows nothing of models."""

from .datamodule import TaskDataModule
from .datasets import DataError

__all__ = ["DataError", "TaskDataModule"]
