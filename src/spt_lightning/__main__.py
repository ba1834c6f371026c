"""``python -m spt_lightning [overrides]``: a thin Hydra entry point around :func:`train`."""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .train import record_failure, train

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        results = train(cfg)
    except Exception as err:
        record_failure(cfg, err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # one failed job must not stop the sweep
            log.exception("job failed; recorded in %s/results.json, the sweep goes on", cfg.paths.output_dir)
            return None
        raise
    # The value a Hydra sweeper optimises: validation accuracy of the selected epoch.
    return results["selection"]["val_acc1"]


if __name__ == "__main__":
    main()
