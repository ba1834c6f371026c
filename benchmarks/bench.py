"""The step-time bench every speed benchmark shares (``run.py``, ``data_loading.py``, ``gpu_check.py``,
``packed_grid.py``): a model of a given geometry stepped as training steps it, the device described, and
the geometry arguments; a module the scripts import, never one another."""

from __future__ import annotations

import argparse
import functools
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
