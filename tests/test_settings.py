"""A run's settings: what a study compares before it reuses a run, and what the report groups by."""

from spt_lightning.settings import NEUTRAL, differences, digest, settings


def _config(output_dir="/runs/a", data_dir="data", lr=0.01, **extra):
    return {"paths": {"output_dir": output_dir, "data_dir": data_dir, "log_dir": "/runs"},
            "task": {"data_dir": f"{data_dir}/vtab-1k/dtd"},
            "callbacks": {"best": {"dirpath": f"{output_dir}/checkpoints",
                                   "_target_": "spt_lightning.data.Something"}},
            "model": {"optimizer": {"lr": lr}}, "logger": {"csv": {"save_dir": output_dir}}, **extra}


def test_the_same_run_in_another_place_has_the_same_settings():
    assert digest(_config()) == digest(_config(output_dir="/elsewhere/b", data_dir="/datasets"))
    flat = settings(_config())
    assert flat["callbacks.best.dirpath"] == "<run>/checkpoints" and flat["task.data_dir"] == "<data>/vtab-1k/dtd"
    assert flat["callbacks.best._target_"] == "spt_lightning.data.Something"  # "data" inside a name stays
    assert not any(k.startswith(("paths.", "logger.")) for k in flat) and "paths." in NEUTRAL


def test_one_changed_setting_is_another_run_and_is_named():
    assert digest(_config(lr=0.02)) != digest(_config())
    assert digest(_config(resume="auto", overwrite=True)) == digest(_config())  # neutral keys
    assert digest(_config(data={"num_workers": 2})) != digest(_config(data={"num_workers": 4}))  # a setting
    assert differences(_config(), _config(lr=0.02)) == ["model.optimizer.lr: 0.01 -> 0.02"]
