"""What the console shows of a run's log records; everything is in the run's log file (Hydra's file handler)."""

from __future__ import annotations

import logging

# ``extra=`` of an INFO record a user should see on the console; every other INFO record goes to the run's log
# file only (Lightning's "Seed set to 0", "GPU available", checkpoint restores, dataloader estimates).
CONSOLE = {"console": True}


class ConsoleFilter(logging.Filter):
    """What the console shows: warnings and errors, and INFO records marked :data:`CONSOLE` (progress the user
    waits for: the prompt init, a download, the W&B mode). matplotlib's notes (its font cache) stay in the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("matplotlib"):
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING or getattr(record, "console", False)
