"""What a study would submit, before it runs (``tune --dry-run``): the jobs, each job's resources as the
launcher would ask for them, and the GPU-hours they take, estimated from ``make gpu-check``'s measured
ViT-B/16 step when there is one (else marked unknown). Torch-free: nothing is built or trained."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# The launcher settings that say what a job asks the scheduler for.
RESOURCES = ("timeout_min", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb", "partition",
             "max_num_timeout", "n_jobs")


def split_sizes(task: DictConfig) -> tuple[int, int, int] | None:
    """``(train, val, test)`` images of a task's select/tune protocol, as its family knows them without
    reading the data; the final runs train on train + val."""
    from .data.families import family_of

    plain = OmegaConf.to_container(task, resolve=True)
    return family_of(plain).sizes(plain)


def images_per_second(gpu_check: Path | None) -> tuple[float, str] | None:
    """The fused bf16 ViT-B/16 (P = 50 deep) training throughput ``make gpu-check`` measured, and its GPU."""
    if gpu_check is None or not Path(gpu_check).is_file():
        return None
    report = json.loads(Path(gpu_check).read_text())
    step = (report.get("step") or {}).get("fused") or {}
    if not step.get("images_per_s"):
        return None
    return float(step["images_per_s"]), str((report.get("environment") or {}).get("gpu", "the GPU gpu_check ran on"))


def run_seconds(cfg: DictConfig, final: bool, speed: float) -> float | None:
    """One run's GPU seconds: every epoch trains on its split and validates (the grid's); a final run tests once.
    A forward pass is taken as a third of a training step."""
    sizes = split_sizes(cfg.task)
    if sizes is None:
        return None
    train, val, test = sizes
    epochs = int(cfg.trainer.max_epochs)
    images = epochs * (train + val) + test / 3 if final else epochs * (train + val / 3)
    return images / speed


def describe(tasks: dict[str, tuple[DictConfig, int, int]], launcher: DictConfig | None, pack: int,
             gpu_check: Path | None) -> str:
    """The plan as text: per task its grid points and final runs, the jobs, each job's resources and the estimated
    GPU-hours. ``tasks``: ``{task: (its composed config, grid points, final runs)}``."""
    speed = images_per_second(gpu_check)
    lines = ["| task | grid points | final runs | images (train / val / test) | epochs | est. GPU-hours |",
             "| --- | --- | --- | --- | --- | --- |"]
    jobs, hours, unknown = 0, 0.0, []
    for task, (cfg, points, finals) in tasks.items():
        jobs += math.ceil(points / pack) + finals
        sizes = split_sizes(cfg.task)
        seconds = None
        if speed is not None and sizes is not None:
            seconds = points * run_seconds(cfg, False, speed[0]) + finals * run_seconds(cfg, True, speed[0])
            hours += seconds / 3600
        else:
            unknown.append(task)
        lines.append(f"| {task} | {points} | {finals} | {' / '.join(map(str, sizes)) if sizes else 'unknown'} | "
                     f"{cfg.trainer.max_epochs} | {'unknown' if seconds is None else f'{seconds / 3600:.2f}'} |")
    total = f"{hours:.1f} GPU-hours" if not unknown else (
        f"{hours:.1f} GPU-hours for the tasks estimated; unknown for {', '.join(unknown)}" if speed else
        "unknown: run `make gpu-check` on the cluster's GPU and pass --gpu-check gpu_check.json")
    where = (f"estimated from the ViT-B/16 bf16 step gpu-check measured on {speed[1]} ({speed[0]:.0f} images/s)"
             if speed else "no gpu_check.json")
    resources = ({k: launcher[k] for k in RESOURCES if k in launcher and launcher[k] is not None}
                 if launcher is not None else {})
    target = str(launcher.get("_target_", "")).rsplit(".", 1)[-1] if launcher is not None else ""
    notes = [f"note: max_num_timeout=0: a job that runs out of time is not requeued (preempted ones are); set "
             f"hydra.launcher.max_num_timeout=3 to let submitit requeue it, it then continues from its last.ckpt"
             ] if resources.get("max_num_timeout") == 0 else []
    return "\n".join([f"dry run: {jobs} job(s) ({'packs of up to ' + str(pack) + ' grid points, ' if pack > 1 else ''}"
                      f"grid points first, then the final runs of each task's choice); nothing was started.",
                      f"launcher: {target or 'basic'}; per job: {_resources(resources)}",
                      *lines, f"total: {total} ({where})", *notes])


def _resources(resources: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in resources.items()) or "one run after another on this machine"
