import faiss
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from spt_lightning.callbacks import PrototypeInit
from spt_lightning.errors import ConfigError
from spt_lightning.models import PromptedViT
from spt_lightning.prototypes import PrototypeError
from spt_lightning.prototypes.capture import TokenReservoir, capture
from spt_lightning.prototypes.strategies import (
    STRATEGIES,
    LayerSpec,
    PooledTokens,
    TokenMoments,
    WindowPool,
    authors_windows,
)


def prototypes(name, collector, layer, length, iters, seed):
    """One layer's prompts as the callback makes them: the strategy's record asked."""
    return STRATEGIES[name].prompts(collector, LayerSpec(layer, length, seed, iters))

from conftest import tiny_vit


def _model(length=3, deep=True):
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4), length, deep=deep)
    model.freeze_backbone()
    return model.eval()


def _hooked_tokens(model, images):
    """Independent capture: timm's own forward with hooks on the block inputs."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach())) for b in model.vit.blocks]
    with torch.no_grad():
        model.vit.forward_features(images)
    for h in hooks:
        h.remove()
    n = model.vit.num_prefix_tokens
    return [t[:, n:] for t in seen]


def test_captured_tokens_equal_block_inputs():
    model = _model()
    images = torch.randn(5, 3, 32, 32)
    expected = _hooked_tokens(model, images)
    with torch.no_grad():
        got = dict(model.block_inputs(images, num_layers=3))
    assert set(got) == {0, 1, 2}
    for layer in range(3):
        assert got[layer].shape == (5, 64, 64)
        torch.testing.assert_close(got[layer], expected[layer], rtol=0, atol=0)
    # layer 0 = patch embedding + position embedding (what the prompts are concatenated to)
    patches = model.vit.patch_embed(images)
    torch.testing.assert_close(got[0], patches + model.vit.pos_embed[:, 1:])
    # ... or, as SPT's code captures it, the patch embedding alone; later layers do not change
    with torch.no_grad():
        authors = dict(model.block_inputs(images, num_layers=3, layer0="patch_embed"))
    torch.testing.assert_close(authors[0], patches, rtol=0, atol=0)
    assert not torch.allclose(authors[0], got[0])
    for layer in (1, 2):
        torch.testing.assert_close(authors[layer], got[layer], rtol=0, atol=0)


def test_reservoir_keeps_everything_below_capacity_and_samples_uniformly_above():
    g = torch.Generator().manual_seed(0)
    everything = TokenReservoir(1000, g)
    stream = [torch.arange(i * 40, (i + 1) * 40, dtype=torch.float32).reshape(10, 4, 1) for i in range(5)]
    for chunk in stream:
        everything.add(chunk)
    assert torch.equal(everything.tokens().flatten(), torch.arange(200, dtype=torch.float32))

    counts = torch.zeros(200)
    for seed in range(300):
        small = TokenReservoir(20, torch.Generator().manual_seed(seed))
        for chunk in stream:
            small.add(chunk)
        kept = small.tokens().flatten().long()
        assert len(kept) == 20 and len(set(kept.tolist())) == 20  # without replacement
        counts[kept] += 1
    # each token kept with probability 20/200: 30 of 300 runs on average
    assert counts.mean() == pytest.approx(30.0)
    assert counts.min() > 10 and counts.max() < 55


def test_window_pool_mean_and_max():
    tokens = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(2, 6, 2)  # 2 images, 6 tokens
    mean, mx = WindowPool(3, "mean"), WindowPool(3, "max")
    mean.add(tokens)
    mx.add(tokens)
    windows = tokens.reshape(2, 3, 2, 2)  # 3 windows of 2 tokens
    torch.testing.assert_close(mean.tokens(), windows.mean(2).mean(0))
    torch.testing.assert_close(mx.tokens(), windows.amax(2).mean(0))


def test_authors_windows_follow_spts_code():
    """P-1 windows of N // (P-1) tokens, then the last N % size tokens (all N when that is 0)."""
    tokens = torch.arange(2 * 7 * 1, dtype=torch.float32).reshape(2, 7, 1)  # 2 images, 7 tokens, D=1
    got = authors_windows(tokens, 4, "mean")  # size 7 // 3 = 2: [0,1] [2,3] [4,5], then the last 7 % 2 = 1
    torch.testing.assert_close(got[0, :, 0], torch.tensor([0.5, 2.5, 4.5, 6.0]))
    got = authors_windows(tokens, 3, "max")  # size 3: [0,1,2] [3,4,5], 7 % 3 = 1: [6]
    torch.testing.assert_close(got[1, :, 0], torch.tensor([9.0, 12.0, 13.0]))
    got = authors_windows(tokens[:, :6], 4, "mean")  # size 2, 6 % 2 = 0: their x[:, -0:] is the whole image
    torch.testing.assert_close(got[0, :, 0], torch.tensor([0.5, 2.5, 4.5, 2.5]))
    torch.testing.assert_close(authors_windows(tokens, 1, "max")[:, 0, 0], torch.tensor([6.0, 13.0]))
    with pytest.raises(PrototypeError, match="7 patch tokens cannot fill the 8 pooled windows of prompt.length=9"):
        authors_windows(tokens, 9, "mean")


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_sampled_pooling_picks_pooled_windows_of_real_images(mode):
    model = _model(length=4)
    images = torch.randn(6, 3, 32, 32)
    pooled = [PooledTokens(4, mode, 10_000, torch.Generator().manual_seed(0)) for _ in range(2)]
    averaged = [WindowPool(4, mode) for _ in range(2)]
    capture(model, [images], pooled)
    capture(model, [images], averaged)
    for layer in range(2):
        picked, stats = prototypes(f"{mode}_pool", pooled[layer], layer, length=4, iters=1, seed=0)
        windows = authors_windows(_hooked_tokens(model, images)[layer], 4, mode).reshape(-1, 64)
        assert stats["tokens"] == 6 * 4 and picked.shape == (4, 64)
        assert all((windows == row).all(1).any() for row in picked)  # each prompt is one image's window
        mean_of_images, _ = prototypes(f"{mode}_pool", averaged[layer], layer, length=4, iters=1, seed=0)
        assert not any((mean_of_images == row).all(1).any() for row in picked)


def test_kmeans_prototypes_equal_faiss_centroids_of_independent_capture():
    model = _model(length=3)
    images = torch.randn(12, 3, 32, 32)
    reservoirs = [TokenReservoir(10_000, torch.Generator().manual_seed(0)) for _ in range(3)]
    capture(model, images.split(4), reservoirs)
    independent = _hooked_tokens(model, images)
    for layer in range(3):
        ours, stats = prototypes("kmeans", reservoirs[layer], layer, length=3, iters=10, seed=7)
        x = independent[layer].reshape(-1, 64).numpy()
        km = faiss.Kmeans(64, 3, niter=10, seed=7 + layer, max_points_per_centroid=256, min_points_per_centroid=1)
        km.train(np.ascontiguousarray(x))
        assert stats["tokens"] == 12 * 64
        np.testing.assert_allclose(ours.numpy(), km.centroids, rtol=1e-4, atol=1e-4)
        assert stats["kmeans_objective"] == pytest.approx(km.obj[-1], rel=1e-4)


def test_random_strategy_picks_captured_tokens():
    model = _model(length=5)
    reservoir = TokenReservoir(10_000, torch.Generator().manual_seed(0))
    capture(model, [torch.randn(2, 3, 32, 32)], [reservoir])
    picked, _ = prototypes("random", reservoir, 0, length=5, iters=1, seed=0)
    pool = reservoir.tokens()
    assert picked.shape == (5, 64)
    assert all((pool == row).all(1).any() for row in picked)
    assert len({tuple(r.tolist()) for r in picked}) == 5


def test_too_few_tokens_is_a_clear_error():
    reservoir = TokenReservoir(10, torch.Generator().manual_seed(0))
    reservoir.add(torch.randn(1, 3, 8))
    with pytest.raises(PrototypeError, match="only 3 tokens .* 5 prompts.*prompt.length"):
        prototypes("kmeans", reservoir, 0, length=5, iters=5, seed=0)


# ---- the callback inside a real fit ---------------------------------------------------------------------


class _DataModule(L.LightningDataModule):
    def __init__(self, n=16):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 4, (n,), generator=g)
        self.task, self.img_size, self.passes = {"name": "t"}, 32, 0

    def transforms(self, train):
        return "train" if train else "eval"

    def prototype_dataloader(self, fraction, seed, batch_size=None, train_transforms=False):
        dm = self
        self.capture_transforms = self.transforms(train_transforms)

        class CountingLoader(DataLoader):  # a pass is an iteration, not the loader's creation
            def __iter__(self):
                dm.passes += 1
                return super().__iter__()

        return CountingLoader(TensorDataset(self.x, self.y), batch_size=batch_size or 8)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8)


def _fit(tmp_path, callback, model=None, ckpt_path=None, epochs=1, attention="auto"):
    from spt_lightning.module import PromptTuningModule
    import functools

    module = PromptTuningModule(model or _model(length=2), 4, functools.partial(torch.optim.AdamW, lr=1e-2),
                                attention=attention)
    dm = _DataModule()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        callbacks=[callback], default_root_dir=tmp_path, enable_checkpointing=ckpt_path is None)
    seen = {}

    class Peek(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["prompts"] = pl_module.model.prompts.embeddings.detach().clone()
            trainer.datamodule.rng_at_train_start = torch.get_rng_state()

    trainer.callbacks.append(Peek())
    torch.manual_seed(123)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, dm, seen["prompts"], trainer


def test_callback_writes_prototypes_in_place_and_caches(tmp_path):
    model = _model(length=2)
    param = model.prompts.embeddings
    expected = []
    for layer, tokens in enumerate(_hooked_tokens(model, _DataModule().x)):
        km = faiss.Kmeans(64, 2, niter=5, seed=3 + layer, max_points_per_centroid=10**6, min_points_per_centroid=1)
        km.train(np.ascontiguousarray(tokens.reshape(-1, 64).numpy()))
        expected.append(torch.from_numpy(km.centroids))
    cb = PrototypeInit("kmeans", tokens_per_prompt=None, layer0="embedded", kmeans_iters=5, seed=3, cache_dir=str(tmp_path / "cache"))
    module, dm, start, _ = _fit(tmp_path, cb, model=model)
    assert module.model.prompts.embeddings is param  # same Parameter: the optimizer trains it
    torch.testing.assert_close(start, torch.stack(expected), rtol=1e-4, atol=1e-4)
    assert dm.passes == 1 and cb.stats["cache"] == "miss"
    assert [s["tokens"] for s in cb.stats["layers"]] == [16 * 64] * 3

    cb2 = PrototypeInit("kmeans", tokens_per_prompt=None, layer0="embedded", kmeans_iters=5, seed=3, cache_dir=str(tmp_path / "cache"))
    _, dm2, start2, _ = _fit(tmp_path, cb2, model=_model(length=2))
    assert dm2.passes == 0 and cb2.stats["cache"] == "hit"
    assert torch.equal(start2, start)
    assert torch.equal(dm2.rng_at_train_start, dm.rng_at_train_start), "a cache hit must not change the random stream"

    cb3 = PrototypeInit("kmeans", tokens_per_prompt=None, layer0="embedded", kmeans_iters=5, seed=4, cache_dir=str(tmp_path / "cache"))  # another key
    _, dm3, _, _ = _fit(tmp_path, cb3, model=_model(length=2))
    assert dm3.passes == 1

    cb4 = PrototypeInit("kmeans", tokens_per_prompt=None, layer0="embedded", kmeans_iters=5, seed=3, cache_dir=str(tmp_path / "cache"))
    _, dm4, _, _ = _fit(tmp_path, cb4, model=_model(length=2), attention="fused")  # the kernel rounds differently
    assert dm4.passes == 1 and cb4.stats["cache"] == "miss"


def test_the_sampled_tokens_do_not_depend_on_the_batch_size(tmp_path):
    """The reservoir on (8 of 1,024 tokens per layer): batches of 8 or 16 sample the same tokens, so their
    prototypes agree and a cache entry written at one batch size is what the other would compute."""
    runs = {}
    for batch in (8, 16, 4):
        cb = PrototypeInit("kmeans", tokens_per_prompt=4, kmeans_iters=5, seed=3, batch_size=batch)
        _, _, runs[batch], _ = _fit(tmp_path / str(batch), cb, model=_model(length=2))
        assert [s["tokens"] for s in cb.stats["layers"]] == [8] * 3
    torch.testing.assert_close(runs[16], runs[8], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(runs[4], runs[8], rtol=1e-5, atol=1e-5)
    cached = PrototypeInit("kmeans", tokens_per_prompt=4, kmeans_iters=5, seed=3, batch_size=8, cache_dir=str(tmp_path / "c"))
    _fit(tmp_path / "c8", cached, model=_model(length=2))
    hit = PrototypeInit("kmeans", tokens_per_prompt=4, kmeans_iters=5, seed=3, batch_size=16, cache_dir=str(tmp_path / "c"))
    _, _, start, _ = _fit(tmp_path / "c16", hit, model=_model(length=2))
    assert hit.stats["cache"] == "hit"
    torch.testing.assert_close(start, runs[16], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_prompt, kept", [(256, 512), (4, 8), (512, 1024)])
def test_kmeans_runs_on_a_sample_of_tokens_per_prompt_tokens(tmp_path, per_prompt, kept):
    """Default: 256 * P tokens per layer (FAISS's own subsample); when that covers every token, every-token
    k-means."""
    every = PrototypeInit("kmeans", tokens_per_prompt=None, kmeans_iters=5, seed=3)
    _, _, start_every, _ = _fit(tmp_path / "every", every, model=_model(length=2))
    cb = PrototypeInit("kmeans", tokens_per_prompt=per_prompt, kmeans_iters=5, seed=3)
    _, _, start, _ = _fit(tmp_path / "sample", cb, model=_model(length=2))
    assert [s["tokens"] for s in cb.stats["layers"]] == [kept] * 3  # of 16 images x 64 tokens
    assert torch.equal(start, start_every) == (kept == 16 * 64)


@pytest.mark.parametrize("layer0", ["patch_embed", "embedded"])
def test_layer0_prototypes_come_from_the_chosen_tokens(tmp_path, layer0):
    model = _model(length=2)
    with torch.no_grad():
        tokens = dict(model.block_inputs(_DataModule().x, 1, layer0))[0]
    km = faiss.Kmeans(64, 2, niter=5, seed=3, max_points_per_centroid=10**6, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(tokens.reshape(-1, 64).numpy()))
    cb = PrototypeInit("kmeans", tokens_per_prompt=None, layer0=layer0, kmeans_iters=5, seed=3)
    _, _, start, _ = _fit(tmp_path, cb, model=model)
    torch.testing.assert_close(start[0], torch.from_numpy(km.centroids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transforms", ["train", "eval"])
def test_capture_reads_the_chosen_transforms_and_keys_the_cache_by_them(tmp_path, transforms):
    cb = PrototypeInit("random", transforms=transforms, cache_dir=str(tmp_path / "cache"))
    _, dm, _, _ = _fit(tmp_path, cb)
    assert dm.capture_transforms == transforms
    other = PrototypeInit("random", transforms="eval" if transforms == "train" else "train",
                          cache_dir=str(tmp_path / "cache"))
    _, dm2, _, _ = _fit(tmp_path, other)
    assert dm2.passes == 1 and other.stats["cache"] == "miss"


def test_resume_does_not_reinitialise(tmp_path):
    cb = PrototypeInit("random", seed=0)
    module, _, _, trainer = _fit(tmp_path, cb)
    ckpt = tmp_path / "resume.ckpt"
    trainer.save_checkpoint(ckpt)
    trained = module.model.prompts.embeddings.detach().clone()
    cb2 = PrototypeInit("random", seed=0)
    _, dm, start, _ = _fit(tmp_path, cb2, ckpt_path=ckpt, epochs=2)
    assert dm.passes == 0
    torch.testing.assert_close(start, trained)


def test_xavier_needs_no_data(tmp_path):
    model = _model(length=2)
    before = model.prompts.embeddings.detach().clone()
    _, dm, start, _ = _fit(tmp_path, PrototypeInit("xavier"), model=model)
    assert dm.passes == 0 and torch.equal(start, before)


def test_unknown_strategy_and_bad_fraction():
    with pytest.raises(PrototypeError, match="kmeans, random"):
        PrototypeInit("kmeens")
    with pytest.raises(ValueError, match="data_fraction"):
        PrototypeInit("kmeans", data_fraction=0)


@pytest.mark.slow
def test_ddp_ranks_start_with_identical_prototypes_and_score_each_image_once(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("ddp_script.py")
    for name, devices in (("ddp", 2), ("single", 1)):
        out = tmp_path / name
        out.mkdir()
        done = subprocess.run([sys.executable, str(script), str(out), str(devices)], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(rank0, rank1)
    torch.testing.assert_close(rank0, torch.load(tmp_path / "single" / "rank0.pt"))  # same as one process
    # 63 val and test images: DistributedSampler would pad to 64 with a duplicate, which accuracy would count
    scored = [json.loads((tmp_path / "ddp" / f"scored{r}.json").read_text()) for r in (0, 1)]
    assert sum(s["val"] for s in scored) == 63 and sum(s["test"] for s in scored) == 63


def test_tokens_stay_on_the_gpu_only_when_they_fit_in_a_quarter_of_its_free_memory(monkeypatch):
    from spt_lightning.prototypes.capture import storage_device

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (16 * 2**30, 80 * 2**30))
    cuda = torch.device("cuda", 0)
    assert storage_device(cuda, 12, 100_000, 768) == cuda  # 3.4 GiB <= 16 GiB / 4
    assert storage_device(cuda, 12, 200_000, 768) == torch.device("cpu")  # 6.9 GiB
    assert storage_device(torch.device("cpu"), 1, 1, 1) == torch.device("cpu")


def test_reservoir_holds_tokens_on_its_storage_device_and_keys_on_the_cpu():
    reservoir = TokenReservoir(1000, torch.Generator().manual_seed(0), device="meta")
    reservoir.add(torch.randn(2, 16, 8))
    assert reservoir.chunks[0].device.type == "meta" and reservoir.keys[0].device.type == "cpu"


def test_kmeans_runs_on_the_models_gpu_only(monkeypatch):
    from spt_lightning.prototypes.strategies import kmeans_gpu

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    assert kmeans_gpu(torch.device("cuda", 3)) is None  # FAISS without GPUs: the CPU
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 8)
    assert kmeans_gpu(torch.device("cuda", 3)) == 3  # DDP rank on GPU 3: not all eight GPUs of the node
    assert kmeans_gpu(torch.device("cpu")) == 0


@pytest.mark.parametrize("key, value", [("pooling", "median"), ("layer0", "cls"), ("transforms", "test")])
def test_unknown_init_switch_is_refused_with_its_options(key, value):
    with pytest.raises(ConfigError, match=rf"init.{key}='{value}': expected one of"):
        PrototypeInit("mean_pool", **{key: value})


def test_scaled_init_draws_prompts_at_each_layers_token_mean_and_spread():
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor([3.0, -1.0, 0.0]), torch.tensor([0.5, 2.0, 1e-3])
    tokens = mean + std * torch.randn(4, 5000, 3, generator=g)  # 4 images of 5,000 tokens
    moments = TokenMoments()
    for image in tokens.split(1):
        moments.add(image)
    got_mean, got_std = moments.moments()
    torch.testing.assert_close(got_mean, tokens.reshape(-1, 3).mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_std, tokens.reshape(-1, 3).std(0, correction=0), rtol=1e-4, atol=1e-6)
    prompts, stats = prototypes("scaled", moments, layer=2, length=4000, iters=1, seed=5)
    assert prompts.shape == (4000, 3) and stats["tokens"] == 20_000
    torch.testing.assert_close(prompts.mean(0), mean, rtol=0, atol=0.1)
    torch.testing.assert_close(prompts.std(0), std, rtol=0.05, atol=1e-4)
    again, _ = prototypes("scaled", moments, layer=2, length=4000, iters=1, seed=5)
    other, _ = prototypes("scaled", moments, layer=3, length=4000, iters=1, seed=5)
    assert torch.equal(prompts, again) and not torch.equal(prompts, other)  # seeded per (seed, layer)


def test_scaled_init_through_the_callback_matches_the_layers_statistics(tmp_path):
    model = _model(length=2)
    cb = PrototypeInit("scaled", layer0="embedded", seed=1, cache_dir=str(tmp_path / "cache"))
    _, _, start, _ = _fit(tmp_path, cb, model=model)
    for layer, tokens in enumerate(_hooked_tokens(model, _DataModule().x)):
        x = tokens.reshape(-1, 64)
        noise = torch.randn(2, 64, generator=torch.Generator().manual_seed(1 + layer))
        torch.testing.assert_close(start[layer], x.mean(0) + x.std(0, correction=0) * noise, rtol=1e-4, atol=1e-4)
    cb2 = PrototypeInit("scaled", layer0="embedded", seed=1, cache_dir=str(tmp_path / "cache"))
    _, dm2, start2, _ = _fit(tmp_path, cb2, model=_model(length=2))
    assert dm2.passes == 0 and torch.equal(start2, start)  # a cache hit equals the miss


def test_a_registered_init_reusing_a_collector_gets_its_own_prompts_and_cache_entries(tmp_path):
    """A user's init (README, Extending): the mean token plus seeded noise of its own scale, on k-means'
    collector. It gets its own prompts (not k-means'), its setting is in its cache key only, and a cache
    entry of another init or another scale is never read for it."""
    from spt_lightning.prototypes.strategies import STRATEGIES, Strategy, TokenReservoir, register

    def mean_plus_noise(reservoir, layer):
        tokens = reservoir.tokens()
        noise = torch.randn(layer.length, tokens.shape[1], generator=torch.Generator().manual_seed(layer.seed))
        return tokens.mean(0) + layer.options["noise"] * noise, {"tokens": len(tokens)}

    register(Strategy("mean_noise", collector=lambda spec: TokenReservoir(spec.max_tokens, spec.generator),
                      prompts=mean_plus_noise, settings=("noise",)))
    try:
        cache = str(tmp_path / "cache")
        kmeans_cb = PrototypeInit("kmeans", layer0="embedded", tokens_per_prompt=None, seed=1, cache_dir=cache)
        _, _, by_kmeans, _ = _fit(tmp_path, kmeans_cb, model=_model(length=2))
        mine = PrototypeInit("mean_noise", layer0="embedded", tokens_per_prompt=None, seed=1, cache_dir=cache, noise=0.5)
        _, dm, start, _ = _fit(tmp_path, mine, model=_model(length=2))
        assert dm.passes == 1 and mine.stats["cache"] == "miss"  # k-means' entry is not its own
        model = _model(length=2)
        for layer, tokens in enumerate(_hooked_tokens(model, _DataModule().x)):
            noise = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
            torch.testing.assert_close(start[layer], tokens.reshape(-1, 64).mean(0) + 0.5 * noise, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(start, by_kmeans)
        other = PrototypeInit("mean_noise", layer0="embedded", tokens_per_prompt=None, seed=1, cache_dir=cache, noise=0.1)
        _, dm, _, _ = _fit(tmp_path, other, model=_model(length=2))
        assert dm.passes == 1  # another value of its own setting: another cache entry
        again = PrototypeInit("kmeans", layer0="embedded", tokens_per_prompt=None, seed=1, cache_dir=cache, noise=0.3)
        _, dm, start, _ = _fit(tmp_path, again, model=_model(length=2))
        assert dm.passes == 0 and torch.equal(start, by_kmeans)  # k-means does not read it: its entry is hit
    finally:
        STRATEGIES.pop("mean_noise")


def test_the_kmeans_device_is_recorded_and_a_gpu_faiss_cannot_see_is_named(tmp_path, monkeypatch, caplog):
    from spt_lightning.callbacks import prototype_init as cb_module

    cb = PrototypeInit("kmeans", tokens_per_prompt=4, kmeans_iters=2, seed=3)
    module, _, _, trainer = _fit(tmp_path, cb, model=_model(length=2))
    assert cb.stats["kmeans_device"] == "cpu"  # no GPU here: FAISS's CPU k-means
    cb_module._warn_once.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine whose FAISS has no CUDA
    with caplog.at_level("WARNING"):
        cb._compute(trainer, module)
        cb._compute(trainer, module)
    assert caplog.text.count("this FAISS sees no GPU") == 1 and "faiss-gpu" in caplog.text
