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
    assert sorted(rows) == ["1", "2", "3", "3b", "4", "7", "8"]  # 8: packed grid, K = 2 and 4
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


def test_compare_table_pairs_each_seed_with_the_reference(tmp_path, monkeypatch):
    """One McNemar test per seed (the seeds share the test images) and a paired t-test across seeds."""
    from scipy.stats import ttest_rel

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import compare

    correct = {"kmeans": ["1" * 90 + "0" * 10, "1" * 92 + "0" * 8, "1" * 91 + "0" * 9],
               "vipamin_match": ["1" * 95 + "0" * 5, "1" * 93 + "0" * 7, "1" * 97 + "0" * 3]}
    for name, strings in correct.items():
        for seed, c in enumerate(strings):
            folder = tmp_path / name / str(seed)
            folder.mkdir(parents=True)
            result = {"status": "ok", "seed": seed, "test": {"acc1": c.count("1") / 100}, "test_correct": c,
                      "parameters": {"learnable": 1000 + len(name), "learnable_without_head": len(name)}}
            (folder / "results.json").write_text(json.dumps(result))
    settings = {"kmeans": ["prompt.init=kmeans"], "vipamin_match": ["init.vipamin_orth_scale=match"]}
    row = next(line for line in compare.table(tmp_path, settings, "kmeans").splitlines() if "orth_scale=match" in line)
    t = ttest_rel([0.95, 0.93, 0.97], [0.90, 0.92, 0.91]).pvalue
    assert "| 95.00 ± 2.00 | +5.00 (p 0.062); +1.00 (p 1.000); +6.00 (p 0.031) |" in row and row.endswith(f"| {t:.3f} |")
    counted = compare.table(tmp_path, settings, "kmeans", parameters=True).splitlines()[-1]
    assert counted.endswith(f"| {t:.3f} | 1,013 (13) |")



def test_compare_curves_reads_how_each_setting_trained(tmp_path, monkeypatch):
    """Val accuracy after epoch 1, last train loss and last val accuracy, means over the finished seeds, read
    from each run's metrics.csv (Lightning's layout: val and train-epoch rows apart); a failed run is left out."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import compare

    for seed, (first, last, loss) in enumerate([(0.50, 0.90, 0.2), (0.60, 0.94, 0.4)]):
        folder = tmp_path / "ssf" / str(seed)
        (folder / "csv").mkdir(parents=True)
        (folder / "csv" / "metrics.csv").write_text(
            "epoch,step,train/loss_epoch,val/acc1\n"
            f"0,9,,{first}\n0,9,1.5,\n1,19,,{last}\n1,19,{loss},\n")
        (folder / "results.json").write_text(json.dumps({"status": "ok", "seed": seed, "output_dir": str(folder)}))
    (tmp_path / "ssf" / "2").mkdir()
    (tmp_path / "ssf" / "2" / "results.json").write_text(json.dumps({"status": "failed", "seed": 2}))
    row = compare.curves(tmp_path, {"ssf": ["method=ssf"]}).splitlines()[-1]
    assert row == "| ssf | 55.0 | 0.300 | 92.0 | 2 |"

def test_gpu_check_says_in_one_line_that_there_is_no_gpu_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                             "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0 and done.stdout.count("\n") == 1 and "no CUDA GPU visible" in done.stdout
    assert not (tmp_path / "g.json").exists()


def test_gpu_check_table_names_the_machine_and_every_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    step = {"ms_per_step": 50.0, "images_per_s": 1280.0, "peak_memory_gib": 6.0}
    report = {"environment": {"gpu": "NVIDIA H100", "gpus": 2, "driver": "550.1", "cuda": "12.4", "torch": "2.x",
                              "faiss": "1.9, 2 GPU(s) visible"},
              "kmeans": {"status": "ok", "objective_rel_diff": 1e-6, "tokens": 1000, "dim": 8, "k": 2, "cpu_s": 1.0,
                         "gpu_s": 0.1},
              "step": {"fused": step, "eager": {**step, "ms_per_step": 80.0}},
              "loader": {"workers": 8, "decoded_each_read_images_per_s": 900.0, "kept_decoded_images_per_s": 3000.0,
                         "model_images_per_s": 1280.0, "loader_over_model_decoded": 0.7, "loader_over_model_kept": 2.34},
              "cli": {"status": "ok", "seconds": 60.0, "precision": "bf16-mixed", "kmeans_device": "cuda:0"},
              "ddp": {"status": "ok", "seconds": 70.0, "precision": "bf16-mixed", "kmeans_device": "cuda:0"}}
    report["packed"] = {k: {"ratio": r} for k, r in ((1, 1.0), (2, 1.7), (4, 2.9))}
    text = script.table(report)
    assert text.startswith("GPU NVIDIA H100 x2, driver 550.1, CUDA 12.4, torch 2.x, FAISS 1.9")
    for check in ("| 1 FAISS", "| 2 ViT-B/16 224 px P=50 deep bf16 step, fused | 50.0 ms", "eager | 80.0 ms",
                  "| 3 loader (8 workers)", "| 6 packed / sequential grid throughput (ViT-B/16, P=50, batch 32) | K=1: 1.00, K=2: 1.70, K=4: 2.90 |", "| 4 CLI end to end, 1 GPU | ok", "| 5 CLI end to end, DDP on 2 GPUs | ok"):
        assert check in text, check
