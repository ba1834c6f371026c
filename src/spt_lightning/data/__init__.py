"""Data: task families (how a task's images are stored), datasets, transforms and the datamodule. Knows
nothing of models. ``TaskDataModule`` (torch) is imported on first use: the study driver reads task
families without torch."""

from ..errors import DataError

__all__ = ["DataError", "TaskDataModule"]


def __getattr__(name: str):
    if name == "TaskDataModule":
        from .datamodule import TaskDataModule

        return TaskDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
