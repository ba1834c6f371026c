"""``report``: run folders → the paper's tables and figures, ours beside the published ones.

``records`` builds a :class:`~.records.Setting` and an :class:`~.records.Entry` per group of runs, once,
from results.json; ``tables``, ``figures`` (drawn by ``plots``), ``pairing`` (published numbers beside
ours, from ``published``), ``stats`` and ``paper`` each take those records; ``cli`` is the command line
(``python -m spt_lightning.report``). Torch-free.
"""

from .cli import main
from .records import Entry, Setting, aggregate, load_runs, setting_of

__all__ = ["Entry", "Setting", "aggregate", "load_runs", "main", "setting_of"]
