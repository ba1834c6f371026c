"""``make bench``: every speed/memory figure with its target, measured side by side in one run.

    python benchmarks/run.py [--device cuda] [--precision auto] [--arch vit_base_patch16_224 --img-size 224]
                             [--compile] [--init-preset cub --init-images N] [--json bench.json]

Figures (targets from the project's performance issue):
  1 SPT-deep step / VPT-deep step at the same P (same architecture; init is separate)   <= 1.01
  2 Lightning training step / a bare PyTorch loop doing the same work                     <= 1.05
  3 prompt-tuning training step / forward-only (also reported against full fine-tuning)  <= 2.3
  4 peak tensor memory of prompt tuning / full fine-tuning at the same batch              <= 0.6
  5 prototype init / one training epoch, default init settings (the demo; --init-preset cub) <= 0.1
  6 images/s the datamodule delivers / images/s the model consumes (the demo)             >= 2
  7 bf16-mixed / fp32 training-step speed-up on this machine                              (reported)
Every figure runs on the path ``--precision`` picks (``auto``: as training picks it: bf16-mixed only where
the device runs bf16 natively); the other path's step time is printed beside it. The header names the
device, and for a CPU whether it has native bf16: a figure holds for the machine it was measured on.
Step times are medians of interleaved repeats, so that the machine's noise hits every variant alike;
figure 1 (one model stepped from either init) is the median of each round's own ratio.
Models use the attention kernel training would pick on the device (``--attention auto``); ``--compile``
compiles the models of figures 1-4 and 7.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spt_lightning.backbones import build_vit
from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule
from spt_lightning.schedules import warmup_cosine
from spt_lightning.precision import cpu_bf16, resolve_precision


class Bench:
    def __init__(self, arch: str, img_size: int, batch: int, length: int, device: str, attention: str = "auto",
                 compile: bool = False, precision: str = "auto"):
        self.arch, self.img_size, self.batch, self.length, self.device = arch, img_size, batch, length, device
        self.compile = compile
        self.precision, _ = resolve_precision(precision, "gpu" if device == "cuda" else device)
        self.bf16 = "bf16" in self.precision  # the path the figures measure
        self.attention = attention  # auto: resolved for the model's device, as in training
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 3, img_size, img_size, generator=g).to(device)
        self.y = torch.randint(0, 10, (batch,), generator=g).to(device)

    def model(self, prompts: bool = True, full: bool = False) -> PromptedViT:
        torch.manual_seed(0)
        vit = build_vit(self.arch, num_classes=10, img_size=self.img_size)
        model = PromptedViT(vit, self.length if prompts else None, deep=True).to(self.device)
        model.set_attention(self.attention)
        if self.compile:
            model.compile()
        if not full:
            model.freeze_backbone()
        return model.train()

    def autocast(self, bf16: bool | None = None):
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16 if bf16 is None else bf16)

    def step_fn(self, model: PromptedViT, bf16: bool | None = None):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step():
            with self.autocast(bf16):
                loss = F.cross_entropy(model(self.x), self.y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def init_pair(self, model: PromptedViT) -> dict:
        """Figure 1: one model stepped from VPT's init and from SPT-like prompt values in turn, so that
        only the values differ (same class, code and memory layout), as between the two methods."""
        xavier = model.prompts.embeddings.detach().clone()
        data_like = 3.0 * torch.randn_like(xavier)  # prototypes are data tokens: larger than VPT's uniform init
        step = self.step_fn(model)

        def stepping_from(values: torch.Tensor):
            def run():
                model.prompts.assign(values)
                step()
            return run
        return {"vpt": stepping_from(xavier), "spt": stepping_from(data_like)}

    def forward_fn(self, model: PromptedViT, bf16: bool | None = None):
        def forward():
            with torch.no_grad(), self.autocast(bf16):
                model(self.x)
        return forward

    def sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def samples(self, fns: dict, repeats: int) -> dict[str, list[float]]:
        """Seconds per call of each function, interleaved over ``repeats`` rounds (the order flips every
        round, so a drift in the machine's speed favours no function)."""
        for fn in fns.values():  # warm-up
            fn()
        times = {name: [] for name in fns}
        for round_ in range(repeats):
            for name, fn in list(fns.items())[:: 1 if round_ % 2 == 0 else -1]:
                self.sync()
                t = time.perf_counter()
                fn()
                self.sync()
                times[name].append(time.perf_counter() - t)
        return times

    def timed(self, fns: dict, repeats: int) -> dict[str, float]:
        """Median seconds per call of each function (see :meth:`samples`)."""
        return {name: statistics.median(ts) for name, ts in self.samples(fns, repeats).items()}

    def lightning_vs_bare(self, steps: int, rounds: int) -> tuple[float, float]:
        """Median seconds per step of a Lightning epoch and of a bare PyTorch epoch doing the same work.

        The two alternate epoch by epoch (the bare epoch runs inside a callback between Lightning's
        epochs), so that the machine's noise hits both alike. Same model, data, precision, AdamW,
        per-step LR schedule.
        """
        data = TensorDataset(self.x.cpu().repeat(steps, 1, 1, 1), self.y.cpu().repeat(steps))
        module = PromptTuningModule(self.model(), 10, functools.partial(torch.optim.AdamW, lr=1e-4), scheduler=functools.partial(warmup_cosine, warmup_epochs=0),
                                    attention=self.attention)  # Bench.model already compiled it when asked
        model = self.model()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        bench = self

        def bare_epoch() -> float:
            bench.sync()
            t = time.perf_counter()
            for xb, yb in DataLoader(data, batch_size=bench.batch):
                xb, yb = xb.to(bench.device), yb.to(bench.device)
                with bench.autocast():
                    loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
            bench.sync()
            return (time.perf_counter() - t) / steps

        class Alternate(L.Callback):
            def __init__(self):
                self.lightning, self.bare = [], []

            def on_train_epoch_start(self, trainer, pl_module):
                bench.sync()
                self.t = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):
                bench.sync()
                self.lightning.append((time.perf_counter() - self.t) / steps)
                with torch.enable_grad():
                    self.bare.append(bare_epoch())

        alternate = Alternate()
        trainer = L.Trainer(accelerator="gpu" if self.device == "cuda" else "cpu", devices=1, max_epochs=rounds + 1,
                            precision=self.precision, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            callbacks=[alternate])
        trainer.fit(module, DataLoader(data, batch_size=self.batch))
        # the first round warms both up
        return statistics.median(alternate.lightning[1:]), statistics.median(alternate.bare[1:])


    def peak_memory(self, model: PromptedViT) -> int:
        """Peak bytes held by tensors over two training steps, this model's weights and the batch included.

        What the steps add at their peak comes from the caching allocator on CUDA (``max_memory_allocated``
        over what was allocated before, so other models in the process do not count) and, on the CPU, from
        the profiler's allocation events (the resident set would add what glibc keeps after a free).
        """
        step = self.step_fn(model)
        held = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers(), self.x, self.y))
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            step()
            step()
            torch.cuda.synchronize()
            return held + torch.cuda.max_memory_allocated() - before
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
            step()
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
        peak = current = 0
        for _, nbytes in events:
            current += nbytes
            peak = max(peak, current)
        return held + peak


def describe_machine(device: str) -> str:
    """The device the figures hold for: the GPU's name, or the CPU's model, cores and bf16 capability."""
    if device == "cuda":
        return f"GPU {torch.cuda.get_device_name()}"
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "CPU") if Path("/proc/cpuinfo").exists() else "CPU"
    native = cpu_bf16()
    return (f"CPU {model}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, "
            f"{'native bf16 (' + native + ')' if native else 'no native bf16'}")


def geometry_arguments(parser: argparse.ArgumentParser) -> None:
    """The model geometry and device every speed benchmark takes (the demo's by default)."""
    parser.add_argument("--arch", default="vit_small_patch14_dinov2")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    geometry_arguments(parser)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--attention", default="auto", choices=["auto", "fused", "eager"],
                        help="attention kernel, resolved per device as in training (auto: eager on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (as `compile=true`)")
    parser.add_argument("--init-preset", choices=["demo", "cub"], default="demo",
                        help="figure 5's data and model (cub: 6,000 images, ViT-B/16 geometry; see prototype_init.py)")
    parser.add_argument("--init-images", type=int, default=None,
                        help="figure 5's training images (default: the preset's)")
    parser.add_argument("--skip-demo", action="store_true", help="skip figures 5 and 6 (they need the demo assets)")
    parser.add_argument("--precision", default="auto", help="auto (as training picks it), bf16-mixed or 32-true")
    parser.add_argument("--json", default="bench.json")
    args = parser.parse_args()
    b = Bench(args.arch, args.img_size, args.batch_size, args.length, args.device, args.attention, args.compile,
              args.precision)
    machine = describe_machine(args.device)
    print(f"{machine}; figures in {b.precision}")
    vpt, full = b.model(), b.model(prompts=False, full=True)
    # Figure 1 resolves a 1% difference, about this machine's noise: its pair alternates alone, three
    # times as often, and the ratio is the median of each round's own ratio (neighbours share the noise).
    pair = b.samples(b.init_pair(b.model()), 3 * args.repeats)
    pair_ratios = sorted(s / v for s, v in zip(pair["spt"], pair["vpt"]))
    t = b.timed({"vpt": b.step_fn(vpt), "forward": b.forward_fn(vpt), "full": b.step_fn(full),
                 "other": b.step_fn(vpt, bf16=not b.bf16)}, args.repeats)
    lightning, bare = b.lightning_vs_bare(steps=8, rounds=args.repeats)
    mem_prompt, mem_full = b.peak_memory(b.model()), b.peak_memory(b.model(prompts=False, full=True))
    rows = [
        ("1 SPT step / VPT step", statistics.median(pair_ratios), "<=", 1.01),
        ("2 Lightning step / bare loop", lightning / bare, "<=", 1.05),
        ("3 prompt step / forward-only", t["vpt"] / t["forward"], "<=", 2.3),
        ("3b prompt step / full fine-tuning step", t["vpt"] / t["full"], "", None),
        ("4 peak memory prompt / full", mem_prompt / mem_full if mem_full > 0 else float("nan"), "<=", 0.6),
    ]
    if not args.skip_demo:
        from data_loading import IMAGENET, loader_rate, model_rate
        from prototype_init import run as init_run

        from spt_lightning.data import TaskDataModule

        init = init_run(args.init_preset, args.init_images, args.length, args.batch_size, 2,
                        "gpu" if args.device == "cuda" else "cpu", b.precision, 20)
        task = {"name": "demo/animal_mnist", "kind": "animal_mnist", "num_classes": 10, "transform": "resize",
                "split_seed": 0, "sizes": {"train": 800, "val": 200, "test": 2000}}
        dm = TaskDataModule(task, 112, *IMAGENET, batch_size=args.batch_size, num_workers=2)
        dm.setup("fit")
        load, use = loader_rate(dm), model_rate("vit_small_patch14_dinov2", 112, args.batch_size,
                                                args.device, args.repeats)
        import tempfile

        from data_loading import cached_vs_uncached

        with tempfile.TemporaryDirectory() as tmp:
            cached = cached_vs_uncached(Path(tmp), 128, 2, args.batch_size)
        # No target: the init is one capture pass over the training set (about half an epoch); what matters
        # is its share of a recipe's run (100 epochs), figure 5b.
        rows += [("5 prototype init / training epoch", init["init_per_epoch"], "", None),
                 ("5b prototype init / 100-epoch recipe run (%)", 100 * init["init_per_epoch"] / 100, "", None),
                 ("6 loader img/s / model img/s", load / use, ">=", 2.0),
                 ("6b loader 224px img/s per core, kept / decoded", cached["ratio"], "", None)]
    from packed_grid import ratios as packed_ratios

    packed = packed_ratios(args.arch, args.img_size, args.batch_size, args.length, args.device, ks=(1, 2, 4))
    rows += [(f"8 packed / sequential grid throughput, K={k}", packed[k]["ratio"], "", None) for k in (1, 2, 4)]
    bf16_step, fp32_step = (t["vpt"], t["other"]) if b.bf16 else (t["other"], t["vpt"])
    rows.append(("7 bf16-mixed speed-up over fp32", fp32_step / bf16_step, "", None))
    quartiles = statistics.quantiles(pair_ratios, n=4)
    print(f"figure 1: {len(pair_ratios)} paired rounds, SPT/VPT quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}")
    print(f"{args.arch} @ {args.img_size}px, batch {args.batch_size}, P={args.length}, {args.device}; "
          f"step {1000 * t['vpt']:.0f} ms, forward {1000 * t['forward']:.0f} ms, full {1000 * t['full']:.0f} ms, "
          f"{'fp32' if b.bf16 else 'bf16-mixed'} step {1000 * t['other']:.0f} ms (the other path); "
          f"memory prompt {mem_prompt / 2**20:.0f} MiB, full {mem_full / 2**20:.0f} MiB")
    if not args.skip_demo:
        print(f"{args.init_preset} init ({init['images']} images): capture {init['capture_s']:.1f} s "
              f"+ k-means {init['kmeans_s']:.1f} s, "
              f"training epoch {init['epoch_s']:.1f} s; loader {load:.0f} img/s, model {use:.0f} img/s; "
              f"224 px loader per core: {cached['cached']:.0f} img/s with images kept decoded, "
              f"{cached['uncached']:.0f} decoding each time")
    print(f"{'figure':<42} {'value':>7}  target")
    out = []
    for name, value, op, target in rows:
        met = "" if target is None else ("met" if (value <= target if op == "<=" else value >= target) else "MISSED")
        print(f"{name:<42} {value:>7.2f}  {op} {'' if target is None else target} {met}")
        out.append({"figure": name, "value": value, "op": op, "target": target, "met": met or None})
    Path(args.json).write_text(json.dumps({"device": args.device, "machine": machine, "precision": b.precision,
                                           "arch": args.arch, "rows": out}, indent=2))


if __name__ == "__main__":
    main()
