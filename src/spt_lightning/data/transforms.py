"""Image transforms by name (a task's ``transform``), normalised with the pretrained weights' own mean/std."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T

TRANSFORMS = ("resize", "vpt", "crop")


def build_transforms(name: str, img_size: int, mean: Sequence[float], std: Sequence[float], train: bool) -> T.Compose:
    """``resize``: VTAB's direct resize to ``img_size``, no crop, no augmentation (train = eval).
    ``vpt``: VPT's FGVC transforms: resize to a square of ``img_size * 8/7`` (256 for 224), random crop
    ``img_size`` + horizontal flip for training, center crop for eval.
    ``crop``: random resized crop (scale 0.08-1) + flip for training, as SPT's code does for FGVC; resize
    the short side to ``img_size / 0.875`` + center crop for eval.
    """
    if name == "resize":
        steps = [T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BICUBIC)]
    elif name == "vpt":
        side = round(img_size * 256 / 224)
        steps = [T.Resize((side, side)), T.RandomCrop(img_size), T.RandomHorizontalFlip()] if train else \
            [T.Resize((side, side)), T.CenterCrop(img_size)]
    elif name == "crop":
        steps = (
            [T.RandomResizedCrop(img_size, interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip()]
            if train
            else [T.Resize(int(img_size / 0.875), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(img_size)]
        )
    else:
        raise ValueError(f"unknown transform '{name}'; choose one of {', '.join(TRANSFORMS)}")
    return T.Compose([T.Lambda(_to_rgb), *steps, T.ToTensor(), T.Normalize(mean, std)])


def _to_rgb(image):
    return image if image.mode == "RGB" else image.convert("RGB")


DETERMINISTIC = (T.Lambda, T.Resize, T.CenterCrop)  # steps that give the same image every time


def split_deterministic(transform: T.Compose) -> tuple[T.Compose, T.Compose]:
    """``transform`` as ``(head, tail)``: the leading steps that give the same PIL image every time (decode
    to RGB, resize, center crop) and the rest (random crops and flips, to tensor, normalise). An image
    kept after ``head`` and passed through ``tail`` is exactly ``transform(image)``."""
    steps = list(transform.transforms)
    cut = next((i for i, step in enumerate(steps) if not isinstance(step, DETERMINISTIC)), len(steps))
    return T.Compose(steps[:cut]), T.Compose(steps[cut:])
