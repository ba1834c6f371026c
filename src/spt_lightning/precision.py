"""``trainer.precision=auto``: bf16 where the hardware runs it natively, fp32 elsewhere.

On a CPU without AVX-512-BF16 or AMX, PyTorch emulates bf16 matmuls; they ran 6.5x slower than fp32 on
an AMD EPYC (Zen 3, AVX2). So a bf16 default that suits one machine can make another crawl.
"""

from __future__ import annotations

import logging
import time
import typing

import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

from .errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", *typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS))


def cpu_bf16() -> str | None:
    """The CPU's native bf16 instructions (``avx512_bf16``, ``amx_bf16``), or ``None`` when it has none."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    native = [name for name in ("amx_bf16", "avx512_bf16") if capabilities.get(name)]
    return ", ".join(native) or None


def _on_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(setting: str | int, accelerator: str) -> tuple[str, str]:
    """The Lightning precision to train with, and why (for the log, the summary and results.json)."""
    setting = str(setting)
    if setting not in PRECISIONS:
        raise ConfigError(f"trainer.precision={setting} is unknown; choose one of {', '.join(PRECISIONS)}")
    gpu = _on_gpu(accelerator)
    if setting != "auto":
        if "bf16" in setting and not gpu and cpu_bf16() is None:
            slower = bf16_slowdown()
            log.warning("trainer.precision=%s on a CPU without native bf16 (no AVX-512-BF16 or AMX): a bf16 matmul "
                        "ran %.1fx slower than fp32 here. Set trainer.precision=auto (fp32 on this CPU).", setting, slower)
        return setting, "set by trainer.precision"
    if gpu:
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"auto: {name} runs bf16 natively"
        return "32-true", f"auto: {name} has no native bf16"
    native = cpu_bf16()
    if native:
        return "bf16-mixed", f"auto: the CPU runs bf16 natively ({native})"
    return "32-true", "auto: the CPU has no native bf16 (AVX-512-BF16 or AMX), where bf16 runs several times slower"


def bf16_slowdown(rows: int = 1024, inner: int = 384, cols: int = 1536) -> float:
    """Time of a ViT-S-sized bf16 matmul over the same in fp32, on this CPU (best of three)."""
    def best(dtype: torch.dtype) -> float:
        g = torch.Generator().manual_seed(0)  # leaves the global random stream alone
        a, b = (torch.randn(*shape, generator=g).to(dtype) for shape in ((rows, inner), (inner, cols)))
        a @ b  # warm-up
        times = []
        for _ in range(3):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        return min(times)

    return best(torch.bfloat16) / best(torch.float32)
