"""trainer.precision=auto: bf16 only where the hardware runs it natively."""

import pytest
import torch

from spt_lightning.config import ConfigError
from spt_lightning.precision import resolve_precision


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with the given capabilities, and no GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return lambda **caps: monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)


@pytest.mark.parametrize("caps, expected", [({"avx512_bf16": True}, "bf16-mixed"), ({"amx_bf16": True}, "bf16-mixed"),
                                            ({"avx2": True}, "32-true"), ({}, "32-true")])
def test_auto_picks_bf16_only_on_cpus_with_native_bf16(cpu, caps, expected):
    cpu(**caps)
    precision, why = resolve_precision("auto", "auto")
    assert precision == expected and why.startswith("auto:")
    assert ("no native bf16" in why) == (expected == "32-true")


def test_an_explicit_precision_wins_and_bf16_on_a_cpu_without_it_warns(cpu, caplog):
    cpu(avx2=True)
    assert resolve_precision("32-true", "cpu") == ("32-true", "set by trainer.precision")
    with caplog.at_level("WARNING"):
        assert resolve_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"
    assert "slower than fp32" in caplog.text and "trainer.precision=auto" in caplog.text
    cpu(avx512_bf16=True)
    caplog.clear()
    resolve_precision("bf16-mixed", "cpu")
    assert not caplog.text


def test_unknown_precision_lists_lightnings_values_and_auto():
    with pytest.raises(ConfigError) as raised:
        resolve_precision("fp8", "cpu")
    for value in ("trainer.precision=fp8", "auto", "bf16-mixed", "32-true", "16-mixed"):
        assert value in str(raised.value)


def test_results_and_summary_say_which_precision_and_why(tmp_path, capsys):
    from conftest import compose_cfg

    from spt_lightning.train import train

    results = train(compose_cfg(tmp_path, ["trainer.precision=32-true"]))
    assert results["precision"] == {"used": "32-true", "why": "set by trainer.precision"}
    assert "precision : 32-true (set by trainer.precision)" in capsys.readouterr().out
