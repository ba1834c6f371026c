"""The prompt-token analysis: its measures on constructed inputs, and the callback on a tiny ViT."""

import csv
import functools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_vit
from torch.utils.data import DataLoader, TensorDataset

from spt_lightning.callbacks.prompt_analysis import PromptAnalysis, rank_dependence, similarity
from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule


@pytest.mark.parametrize("d", [64, 384, 768, 4096])
def test_dependence_is_zero_for_independent_vectors_at_any_width_and_one_for_monotone_maps(d):
    g = torch.Generator().manual_seed(d)
    a, b = torch.randn(400, d, generator=g), torch.randn(400, d, generator=g)
    independent = rank_dependence(a, b)
    assert abs(independent.mean()) < 4 * independent.std() / 400**0.5  # mean 0: no bias at any width
    assert torch.allclose(rank_dependence(a, a**3), torch.ones(400), atol=1e-5)  # monotone, non-linear
    assert torch.allclose(rank_dependence(a, torch.exp(2 * a)), torch.ones(400), atol=1e-5)
    assert rank_dependence(a, -a).min() > 1 - 1e-5  # decreasing maps share as much
    outliers_a, outliers_b = a.clone(), b.clone()
    outliers_a[:, :2], outliers_b[:, :2] = 100.0, 100.0  # two shared extreme channels (massive activations)
    assert rank_dependence(outliers_a, outliers_b).mean() < 0.01
    related = rank_dependence(a, a + 0.5 * torch.randn(400, d, generator=g))
    assert independent.max() < related.min() < 1  # ordered by dependence


def _nmi_by_hand(x, y, bins):
    """sklearn's normalized_mutual_info_score (arithmetic) of two label sequences, written out with numpy."""
    import numpy as np

    def labels(v):
        return np.argsort(np.argsort(v)) * bins // len(v)

    joint = np.histogram2d(labels(x), labels(y), bins=[np.arange(bins + 1)] * 2)[0] / len(x)
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = (joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()
    h = lambda p: -(p[p > 0] * np.log(p[p > 0])).sum()  # noqa: E731
    return 2 * mi / (h(pa) + h(pb))


def test_nmi_is_sklearns_score_of_binned_coordinates_and_orders_known_dependence():
    from spt_lightning.callbacks.prompt_analysis import NMI_BINS, binned_nmi

    g = torch.Generator().manual_seed(0)
    d = 384
    x = torch.randn(200, d, generator=g)
    noisy = x + torch.randn(200, d, generator=g)
    assert torch.allclose(binned_nmi(x[:5], noisy[:5]).double(),
                          torch.tensor([_nmi_by_hand(x[i].numpy(), noisy[i].numpy(), NMI_BINS) for i in range(5)]),
                          atol=1e-5)
    levels = [float(binned_nmi(x, x + s * torch.randn(200, d, generator=g)).mean()) for s in (10.0, 2.0, 1.0, 0.5, 0.1)]
    assert levels == sorted(levels) and levels[-1] > 0.6 and float(binned_nmi(x, x).mean()) == pytest.approx(1.0)
    independent = float(binned_nmi(x, torch.randn(200, d, generator=g)).mean())
    assert 0.02 < independent < 0.08  # its upward bias at D = 384: (B - 1)^2 / (D ln B) = 0.046 (rank dependence: 0)
    # where the two differ: a non-monotone dependence (x^2) is seen by NMI, not by the rank measure
    assert float(binned_nmi(x, x**2).mean()) > 0.4 and abs(float(rank_dependence(x, x**2).mean())) < 0.02


def test_choosing_the_nearest_token_does_not_make_a_random_prompt_dependent():
    """The nearest of many tokens correlates with a random prompt by chance; the measure chooses on the even
    coordinates and measures on the odd, so a random prompt still scores about 0 against 4,096 tokens."""
    g = torch.Generator().manual_seed(3)
    tokens, prompts = torch.randn(4096, 128, generator=g), torch.randn(256, 128, generator=g)
    chosen_on_all = (F.normalize(prompts, dim=-1) @ F.normalize(tokens, dim=-1).T).argmax(1)
    assert rank_dependence(prompts, tokens[chosen_on_all]).mean() > 0.05  # the selection bias the split avoids
    scores = torch.tensor([similarity(p[None], tokens)["dependence"] for p in prompts])
    assert abs(scores.mean()) < 4 * scores.std() / 256**0.5


def test_similarity_of_prompts_that_are_tokens():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(200, 64, generator=g)
    got = similarity(tokens[[3, 70, 150]].clone(), tokens)
    assert got["cos_nearest"] == pytest.approx(1.0, abs=1e-5) and got["dependence"] == pytest.approx(1.0, abs=1e-5)
    far = similarity(torch.randn(3, 64, generator=g), tokens)
    assert far["cos_nearest"] < 0.6 and far["dependence"] < 0.3
    mean = similarity(tokens.mean(0, keepdim=True), tokens)
    assert mean["cos_mean"] == pytest.approx(1.0, abs=1e-5)


class _Data(L.LightningDataModule):
    has_val = True

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.x, self.y = torch.randn(24, 3, 32, 32, generator=g), torch.randint(0, 4, (24,), generator=g)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:10], self.y[:10]), batch_size=4)


@pytest.mark.parametrize("deep", [True, False])
def test_callback_logs_every_prompted_layer_each_epoch_and_changes_nothing(tmp_path, deep):
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4), 3, deep=deep)
    model.freeze_backbone()
    module = PromptTuningModule(model, 4, functools.partial(torch.optim.AdamW, lr=1e-2))
    analysis = PromptAnalysis(images=6)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, callbacks=[analysis], default_root_dir=tmp_path)
    trainer.fit(module, datamodule=_Data())
    layers = 3 if deep else 1
    rows = list(csv.DictReader((tmp_path / "prompt_analysis.csv").open()))
    assert [(int(r["epoch"]), int(r["layer"])) for r in rows] == [(e, i) for e in range(3) for i in range(layers)]
    assert analysis.batch.shape == (6, 3, 32, 32)  # the same first validation images every epoch
    assert all(-0.1 <= float(r["dependence"]) <= 1 and -1 <= float(r["cos_nearest"]) <= 1 for r in rows)
    # measuring is read-only: the same numbers again, and training mode kept
    last, mode = [r for r in analysis.rows if r["epoch"] == 2], model.training
    again = analysis.measure(model)
    assert [r["dependence"] for r in again] == pytest.approx([r["dependence"] for r in last]) and model.training == mode


def test_bad_image_count_is_refused():
    with pytest.raises(ValueError, match="prompt_analysis.images"):
        PromptAnalysis(images=0)


def test_a_run_with_the_analysis_gets_its_heatmap_in_the_report(cfg_factory, tmp_path):
    from spt_lightning.report import main as report_main
    from spt_lightning.train import train

    cfg = cfg_factory("callbacks=prompt_analysis", "callbacks.prompt_analysis.images=4")
    results = train(cfg)
    rows = list(csv.DictReader((tmp_path / "prompt_analysis.csv").open()))
    assert results["status"] == "ok" and len(rows) == (cfg.trainer.max_epochs + 1) * cfg.backbone.depth  # deep
    assert {int(r["epoch"]) for r in rows} == set(range(cfg.trainer.max_epochs + 1))
    assert report_main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    (png,) = (tmp_path / "report" / "analysis").glob("*.png")
    assert png.name.endswith("_dependence.png")


def test_heatmap_shows_every_layer_and_epoch_on_integer_ticks(tmp_path):
    import pandas as pd

    from spt_lightning.report.plots import analysis_heatmap

    rows = pd.DataFrame([{"epoch": e, "layer": i, "dependence": 0.1 * e + 0.01 * i} for e in range(4) for i in range(3)])
    path, shown = analysis_heatmap(rows, "demo", tmp_path / "h.png")
    assert shown == {"layers": [0, 1, 2], "epochs": [0, 1, 2, 3]} and path.stat().st_size > 1000
