"""``python -m spt_lightning [overrides]``: a thin Hydra entry point around :func:`train`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    # The value a Hydra sweeper optimises: validation accuracy of the selected epoch.
    return results["selection"]["val_acc1"]


if __name__ == "__main__":
    main()
