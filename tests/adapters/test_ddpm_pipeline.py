"""The diffusers-style entry point, the embedded models and the demo (smoke tests, fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.adapters.ddpm import DiffusionKernel, build_sampler, speculative_generate  # noqa: E402
from gaussspec.adapters.ddpm import models  # noqa: E402
from gaussspec.adapters.ddpm.metrics import frechet_distance  # noqa: E402

torch.set_num_threads(1)


def tiny_unet(seed=0, size=8):
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_speculative_generate_output_types(output_type):
    pipe = DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler())
    out = speculative_generate(pipe, batch_size=3, generator=torch.Generator().manual_seed(0),
                               num_inference_steps=30, output_type=output_type, progress=False)
    if output_type == "pil":
        assert len(out.images) == 3 and out.images[0].size == (8, 8)
    elif output_type == "np":
        assert out.images.shape == (3, 8, 8, 1) and 0 <= out.images.min() and out.images.max() <= 1
    else:
        assert out.images.shape == (3, 1, 8, 8)
    assert out.samples.shape == (3, 1, 8, 8)
    assert out.stats.sequential_target_calls < 30


def test_speculative_generate_drafters_and_plain():
    unet, scheduler = tiny_unet(1), DDPMScheduler()
    generator = torch.Generator().manual_seed(0)
    plain = speculative_generate((unet, scheduler), 2, generator, 20, "pt", drafter="none", progress=False)
    assert plain.stats.sequential_target_calls == 20
    for drafter in ("free", "frozen", tiny_unet(2), gs.FreeDrafter()):
        out = speculative_generate((unet, scheduler), 2, torch.Generator().manual_seed(0), 20, "pt",
                                   drafter=drafter, draft_length=3, progress=False)
        assert out.samples.shape == (2, 1, 8, 8) and torch.isfinite(out.samples).all()
    ddim = speculative_generate((unet, DDIMScheduler()), 2, torch.Generator().manual_seed(0), 20, "pt",
                                eta=1.0, verification="token", coupling="reflection", progress=False)
    assert ddim.stats.num_steps == 20


def test_speculative_generate_bad_input():
    with pytest.raises(TypeError, match="Pipeline"):
        speculative_generate(object(), progress=False)
    with pytest.raises(ValueError, match="output_type"):
        speculative_generate((tiny_unet(), DDPMScheduler()), output_type="jpg", progress=False)
    with pytest.raises(ValueError, match="drafter"):
        build_sampler(DiffusionKernel(tiny_unet(), DDPMScheduler(), 5), drafter="fastest")


def test_embedded_models_load_and_are_small():
    sizes = sum(p.stat().st_size for p in models.WEIGHTS_DIR.iterdir())
    assert sizes < 10 * 2**20
    pipe = models.load_digits_pipeline()
    assert isinstance(pipe, DDPMPipeline)
    assert pipe.unet.config.sample_size == 8 and pipe.scheduler.config.num_train_timesteps == 1000
    assert pipe.scheduler.config.prediction_type == "epsilon"
    draft = models.load_draft_unet()
    n_target = sum(p.numel() for p in pipe.unet.parameters())
    n_draft = sum(p.numel() for p in draft.parameters())
    assert n_draft < n_target / 4
    classifier = models.load_classifier()
    images, labels = models.digits_dataset()
    with torch.no_grad():
        accuracy = (classifier(images).argmax(1) == labels).float().mean().item()
        features = classifier.features(images[:10])
    assert accuracy > 0.97 and features.shape == (10, 64)


def test_frechet_distance_basics():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    assert abs(frechet_distance(a, a)) < 1e-8
    assert frechet_distance(a, b) < 0.2
    assert frechet_distance(a, b + 1.0) == pytest.approx(5.0 + frechet_distance(a, b), abs=0.3)


def test_demo_smoke(tmp_path, capsys):
    from gaussspec.adapters.ddpm.demo import main

    report = main(["--out", str(tmp_path), "--steps", "20", "--batch-size", "8", "--permutations", "5",
                   "--draft-length", "4", "--quiet", "--reference"])
    assert (tmp_path / "digits_plain_vs_speculative.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["table"][0]["sequential_target_calls"] == 20
    assert saved["table"][1]["sequential_target_calls"] < 20
    assert "frechet_plain_vs_plain" in saved["agreement"] and report["config"]["num_inference_steps"] == 20
    printed = capsys.readouterr().out
    assert "block eff." in printed and "Frechet" in printed


def test_docs_quickstart_snippet_runs():
    """The quick-start block of docs/ddpm.md runs as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "ddpm.md").read_text()
    block = text.split("<!-- docs-snippet: quickstart -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "docs/ddpm.md", "exec"), namespace)
    assert namespace["out"].images.shape == (4, 8, 8, 1)
    assert namespace["out"].stats.sequential_target_calls < 100
