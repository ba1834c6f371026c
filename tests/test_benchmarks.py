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
    assert [int(r.split(" | ")[1]) for r in rows] == [0, 1]  # 2 blocks: the code's W_V of each layer is its own
    assert all(float(r.split(" | ")[5]) > 0 for r in rows)  # the orthogonal part's norm


def test_vipamin_forms_table_pairs_each_seed_with_kmeans(tmp_path, capsys):
    """One McNemar test per seed (the seeds share the test images) and a paired t-test across seeds."""
    import importlib.util

    from scipy.stats import ttest_rel

    spec = importlib.util.spec_from_file_location("vipamin_forms", ROOT / "benchmarks" / "vipamin_forms.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    correct = {"kmeans": ["1" * 90 + "0" * 10, "1" * 92 + "0" * 8, "1" * 91 + "0" * 9],
               "vipamin_match": ["1" * 95 + "0" * 5, "1" * 93 + "0" * 7, "1" * 97 + "0" * 3]}
    for name, strings in correct.items():
        for seed, c in enumerate(strings):
            folder = tmp_path / name / str(seed)
            folder.mkdir(parents=True)
            result = {"status": "ok", "seed": seed, "test": {"acc1": c.count("1") / 100}, "test_correct": c}
            (folder / "results.json").write_text(json.dumps(result))
    row = next(line for line in script.table(tmp_path).splitlines() if "orth_scale=match" in line)
    t = ttest_rel([0.95, 0.93, 0.97], [0.90, 0.92, 0.91]).pvalue
    assert "| 95.00 ± 2.00 | +5.00 (p 0.062); +1.00 (p 1.000); +6.00 (p 0.031) |" in row and row.endswith(f"| {t:.3f} |")
