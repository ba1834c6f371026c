"""Image transforms per recipe, normalised with the pretrained weights' own mean/std."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T

RECIPES = ("resize", "crop")


def build_transforms(recipe: str, img_size: int, mean: Sequence[float], std: Sequence[float], train: bool) -> T.Compose:
    """``resize``: VTAB's direct resize to ``img_size``, no crop, no augmentation (train = eval).
    ``crop``: FGVC's random resized crop + flip for training; resize to ``img_size / 0.875`` + center crop for eval.
    """
    if recipe == "resize":
        steps = [T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BICUBIC)]
    elif recipe == "crop":
        steps = (
            [T.RandomResizedCrop(img_size, interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip()]
            if train
            else [T.Resize(int(img_size / 0.875), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(img_size)]
        )
    else:
        raise ValueError(f"unknown transform recipe '{recipe}'; choose one of {RECIPES}")
    return T.Compose([T.Lambda(_to_rgb), *steps, T.ToTensor(), T.Normalize(mean, std)])


def _to_rgb(image):
    return image if image.mode == "RGB" else image.convert("RGB")
