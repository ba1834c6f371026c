"""The package works as a plain (non-editable) install: the Hydra configs travel inside the wheel."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a pip install: `make test-extra` (and CI) run it
def test_configs_found_when_installed_non_editable(tmp_path):
    site, project = tmp_path / "site", tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(project)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import spt_lightning; print(spt_lightning.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout
    assert where.startswith(str(site)), where
    done = subprocess.run([sys.executable, "-m", "spt_lightning", "--cfg", "job", "task=fgvc/cub", "method=vpt_shallow"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "name: fgvc/cub" in done.stdout and "name: vpt_shallow" in done.stdout


def test_readme_is_a_short_guide_whose_links_resolve():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
    assert "make test" in text  # the command CI runs


def test_the_reference_layout_names_every_module_and_benchmark():
    """docs/reference.md's layout is where a newcomer looks for a module: each one of src/ (and each
    benchmark script) has its line there, so a module added without a word in the docs fails here."""
    text = (ROOT / "docs" / "reference.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("How a run flows")]
    package = ROOT / "src" / "spt_lightning"
    modules = [p.name for p in package.glob("*.py")] + [f"{p.name}/" for p in package.iterdir()
                                                         if p.is_dir() and (p / "__init__.py").is_file()]
    lines = {line.split()[0] for line in layout.splitlines() if line.startswith("  ") and line.split()}
    assert sorted(m for m in modules if m not in lines) == []
    missing = [p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name not in layout]
    assert missing == []
