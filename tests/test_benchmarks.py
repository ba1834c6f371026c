"""The benchmark table runs end to end (no timing is asserted: targets live in benchmarks/, not in tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_table_runs_and_reports_every_model_figure(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--arch", "vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "4", "--length", "2",
            "--repeats", "1", "--skip-demo", "--json", str(out)]
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), *args], capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {r["figure"].split()[0]: r for r in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == ["1", "2", "3", "3b", "4", "7"]
    assert all(r["value"] > 0 for r in rows.values())
    assert rows["4"]["value"] < 1, "prompt tuning holds no weight gradients and no AdamW state of the backbone"
    assert "figure" in run.stdout and "MiB" in run.stdout


def test_vipamin_scale_prints_one_row_per_layer(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("vipamin_scale", ROOT / "benchmarks" / "vipamin_scale.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["task=demo/synthetic", "debug=fast", "init.vipamin_images=8", "init.vipamin_k=2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split(" | ")[0][2:]) for r in rows] == list(range(2))  # the tiny ViT's 2 blocks
    assert all(float(r.split(" | ")[3]) > 0 for r in rows)  # the orthogonal part's norm
