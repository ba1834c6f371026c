"""Image transforms by name (a task's ``transform``), normalised with the pretrained weights' own mean/std."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T

TRANSFORMS = ("resize", "center_crop", "vpt", "crop")
BICUBIC = T.InterpolationMode.BICUBIC


def build_transforms(name: str, img_size: int, mean: Sequence[float], std: Sequence[float], train: bool) -> T.Compose:
    """Each lineage's transforms, by name (for 224 px; other sizes scale alike):

    ``resize``: squash the image to ``img_size`` x ``img_size`` (bicubic), no augmentation (train = eval):
    NOAH's VTAB-1k loader, and VPT's VTAB-1k pipeline up to the kernel (VPT's ``tf_dataset.py`` L150
    resizes with TensorFlow's bilinear ``tf.image.resize``).
    ``center_crop``: resize the short side to ``img_size`` (bicubic), centre crop ``img_size``, train = eval:
    SPT's VTAB-1k loaders (``Dataset/VTAB.py``, every task, e.g. L51-63).
    ``vpt``: VPT's FGVC transforms (``src/data/transforms.py`` L20-40): resize the short side to
    ``img_size * 8/7`` (256, bilinear), random crop ``img_size`` + horizontal flip for training, centre crop for eval.
    ``crop``: SPT's FGVC transforms (``Dataset/FGVC.py`` L47-59): random resized crop (scale 0.08-1, bicubic) +
    flip for training; resize the short side to ``img_size / 0.875`` (256, bicubic) + centre crop for eval.
    """
    side = round(img_size * 256 / 224)
    if name == "resize":
        steps = [T.Resize((img_size, img_size), interpolation=BICUBIC)]
    elif name == "center_crop":
        steps = [T.Resize(img_size, interpolation=BICUBIC), T.CenterCrop(img_size)]
    elif name == "vpt":
        steps = [T.Resize(side), T.RandomCrop(img_size), T.RandomHorizontalFlip()] if train else \
            [T.Resize(side), T.CenterCrop(img_size)]
    elif name == "crop":
        steps = ([T.RandomResizedCrop(img_size, interpolation=BICUBIC), T.RandomHorizontalFlip()] if train
                 else [T.Resize(side, interpolation=BICUBIC), T.CenterCrop(img_size)])
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
