"""`make gpu-check`: on one GPU, in minutes, with no dataset and no hub weights (random-weight ViT-B/16,
generated images), check and measure what no CPU can show:

1. FAISS k-means on the GPU equals FAISS on the CPU on the same tokens (centroids, objective) and its speed;
2. a ViT-B/16 224 px, P = 50 deep prompt-tuning step in bf16 with PyTorch's fused attention vs timm's eager
   attention: ms per step, images/s, peak memory;
3. the loader's images/s (default workers, generated 500x375 JPEGs at 224 px, decoded each read and kept
   decoded) against the model's images/s;
4. the CLI end to end on the GPU (`task=demo/synthetic` at 224 px on a random ViT-B/16, 2 epochs);
5. a 2-process DDP run of the same, when there are 2 GPUs or more;
6. packed grid points (models/packed.py) against the same points one after another, K = 1, 2, 4, at
   ViT-B/16 224 px, P = 50 deep, batch 32: grid-point steps per second, packed / sequential.

It prints a table naming the GPU, driver, CUDA, torch and FAISS, and writes `gpu_check.json`. Without a
CUDA GPU it says so in one line and exits 0. Needs the project installed (`pip install -e .`): torch,
timm, lightning, hydra-core, omegaconf, torchmetrics, pandas and FAISS with CUDA (`faiss-gpu-cu12`) for
check 1 (without it, check 1 reports "no GPU FAISS" and the rest runs).

    python benchmarks/gpu_check.py [--out gpu_check.json] [--batch-size 64] [--skip-cli]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def environment() -> dict:
    info = {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}
    try:
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        info["driver"] = "unknown (no nvidia-smi)"
    try:
        import faiss

        info["faiss"] = f"{faiss.__version__}, {faiss.get_num_gpus()} GPU(s) visible"
    except ImportError:
        info["faiss"] = "not installed"
    return info


def kmeans_check(tokens: int = 200_000, dim: int = 768, k: int = 50, iters: int = 20) -> dict:
    """FAISS k-means of the same tokens from the same initial centroids on the GPU and on the CPU."""
    try:
        import faiss
    except ImportError:
        return {"status": "FAISS not installed"}
    if faiss.get_num_gpus() == 0:
        return {"status": "no GPU FAISS (install faiss-gpu-cu12, without faiss-cpu beside it)"}
    x = torch.randn(tokens, dim, generator=torch.Generator().manual_seed(0)).numpy()
    out = {}
    for where in ("cpu", "gpu"):
        km = faiss.Kmeans(dim, k, niter=iters, seed=0, gpu=where == "gpu", max_points_per_centroid=tokens)
        started = time.perf_counter()
        km.train(x)
        out[where] = {"seconds": time.perf_counter() - started, "objective": float(km.obj[-1]),
                      "centroids": km.centroids.copy()}
    diff = float(abs(out["gpu"]["centroids"] - out["cpu"]["centroids"]).max())
    rel = abs(out["gpu"]["objective"] - out["cpu"]["objective"]) / out["cpu"]["objective"]
    return {"status": "ok" if rel < 1e-3 else "DIFFERENT", "tokens": tokens, "dim": dim, "k": k,
            "cpu_s": out["cpu"]["seconds"], "gpu_s": out["gpu"]["seconds"], "objective_rel_diff": rel,
            "centroid_max_abs_diff": diff}


def step_check(batch: int, repeats: int = 20) -> dict:
    """A P = 50 deep prompt step of ViT-B/16 at 224 px in bf16, fused vs eager attention."""
    from bench import Bench

    out = {}
    for attention in ("fused", "eager"):
        bench = Bench("vit_base_patch16_224", 224, batch, 50, "cuda", attention=attention, precision="bf16-mixed")
        model = bench.model()
        step = bench.step_fn(model)
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / repeats
        out[attention] = {"ms_per_step": 1000 * seconds, "images_per_s": batch / seconds,
                          "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}
        del model, step
        torch.cuda.empty_cache()
    out["fused_speedup"] = out["eager"]["ms_per_step"] / out["fused"]["ms_per_step"]
    return out


def loader_check(batch: int, model_images_per_s: float) -> dict:
    from data_loading import cached_vs_uncached

    workers = min(8, len(os.sched_getaffinity(0)))
    with tempfile.TemporaryDirectory() as tmp:
        rates = cached_vs_uncached(Path(tmp), 512, workers, batch, rounds=2)
    return {"workers": workers, "decoded_each_read_images_per_s": rates["uncached"] * workers,
            "kept_decoded_images_per_s": rates["cached"] * workers, "model_images_per_s": model_images_per_s,
            "loader_over_model_decoded": rates["uncached"] * workers / model_images_per_s,
            "loader_over_model_kept": rates["cached"] * workers / model_images_per_s}


def cli_check(devices: int) -> dict:
    """The CLI end to end on the GPU(s): a random ViT-B/16 at 224 px on generated images, 2 epochs."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "spt_lightning", "task=demo/synthetic", "pretrain=random",
                   "backbone=vit_base_patch16", "trainer.max_epochs=2", "trainer.accelerator=gpu",
                   f"trainer.devices={devices}", *(["trainer=ddp"] if devices > 1 else []),
                   f"paths.log_dir={tmp}", "init.cache_dir=null", "hydra.run.dir=" + str(Path(tmp) / "run")]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        results = list(Path(tmp).rglob("results.json"))
        result = json.loads(results[0].read_text()) if results else {}
    return {"status": "ok" if done.returncode == 0 and result.get("status") == "ok" else "FAILED",
            "devices": devices, "seconds": seconds, "test_acc1": result.get("test", {}).get("acc1"),
            "precision": (result.get("precision") or {}).get("used"),
            "kmeans_device": (result.get("init") or {}).get("kmeans_device"),
            "error": None if done.returncode == 0 else done.stderr[-1500:]}


def table(report: dict) -> str:
    env = report["environment"]
    lines = [f"GPU {env['gpu']} x{env['gpus']}, driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, "
             f"FAISS {env['faiss']}", "| check | result |", "| --- | --- |"]
    km = report.get("kmeans", {})
    lines.append(f"| 1 FAISS k-means GPU = CPU | {km.get('status')}" + (
        f": objective rel. diff {km['objective_rel_diff']:.1e}, {km['tokens']:,} x {km['dim']} tokens, k={km['k']}: "
        f"CPU {km['cpu_s']:.2f} s, GPU {km['gpu_s']:.2f} s |" if "cpu_s" in km else " |"))
    st = report.get("step")
    if st:
        for attention in ("fused", "eager"):
            s = st[attention]
            lines.append(f"| 2 ViT-B/16 224 px P=50 deep bf16 step, {attention} | {s['ms_per_step']:.1f} ms, "
                         f"{s['images_per_s']:.0f} img/s, peak {s['peak_memory_gib']:.2f} GiB |")
    ld = report.get("loader")
    if ld:
        lines.append(f"| 3 loader ({ld['workers']} workers) / model img/s | decoded each read "
                     f"{ld['decoded_each_read_images_per_s']:.0f} ({ld['loader_over_model_decoded']:.2f}x), kept "
                     f"decoded {ld['kept_decoded_images_per_s']:.0f} ({ld['loader_over_model_kept']:.2f}x); model "
                     f"{ld['model_images_per_s']:.0f} |")
    packed = report.get("packed")
    if packed:
        lines.append("| 6 packed / sequential grid throughput (ViT-B/16, P=50, batch 32) | " + ", ".join(
            f"K={k}: {packed[k]['ratio']:.2f}" for k in (1, 2, 4) if k in packed) + " |")
    for key, name in (("cli", "4 CLI end to end, 1 GPU"), ("ddp", "5 CLI end to end, DDP on 2 GPUs")):
        c = report.get(key)
        if c:
            lines.append(f"| {name} | {c['status']}, {c['seconds']:.0f} s, {c['precision']}, k-means on "
                         f"{c['kmeans_device']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-cli", action="store_true", help="skip checks 4 and 5 (the CLI runs)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU visible to torch {torch.__version__} (CUDA build {torch.version.cuda}); "
              f"nothing to check here")
        return 0
    report = {"environment": environment()}
    report["kmeans"] = kmeans_check()
    report["step"] = step_check(args.batch_size)
    report["loader"] = loader_check(args.batch_size, report["step"]["fused"]["images_per_s"])
    from packed_grid import ratios

    report["packed"] = ratios("vit_base_patch16_224", 224, 32, 50, "cuda")
    if not args.skip_cli:
        report["cli"] = cli_check(1)
        if report["environment"]["gpus"] >= 2:
            report["ddp"] = cli_check(2)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
