"""Exactness of speculative DDPM through the adapter.

1. Gaussian-data twin: for data ``x0 ~ N(mu, diag(v))`` the exact posterior denoiser makes every
   DDPM step affine, so the law of the chain is Gaussian in closed form:
   * the whole path law (``gaussspec.testing.path_law``, K = 100 steps, a 4x4 twin) for free,
     frozen and independent-model drafters, block and token verification;
   * the final-sample law at K = 1000 on the full 8x8 twin (mean/variance recursion computed
     here from the scheduler's alphas, independently of the adapter).
2. The trained digits model: two-sample tests (KS on random projections + energy distance,
   ``gaussspec.testing.check_exactness``) of speculative against plain chains.

False-alarm budget: every test rejects at alpha = 1e-3 (Holm-corrected inside each test); with
~10 default tests the family-wise false-alarm rate is below 1%. Seeds are fixed, so the outcome
is deterministic. Each test family has a planted engine mutant that the same test must reject.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.adapters.ddpm import DiffusionKernel  # noqa: E402
from gaussspec.adapters.ddpm.models import digits_dataset, load_digits_pipeline  # noqa: E402
from gaussspec.testing import PathLaw, check_exactness, path_law, path_law_test, planted_mutant  # noqa: E402

torch.set_num_threads(1)

ALPHA = 1e-3


class GaussianDenoiser(torch.nn.Module):
    """The exact noise prediction ``E[eps | x_t]`` for data ``x0 ~ N(mu, diag(var))``.

    With ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``:
    ``E[eps | x_t] = sqrt(1 - abar) / (abar var + 1 - abar) * (x_t - sqrt(abar) mu)``.
    """

    def __init__(self, mu: torch.Tensor, var: torch.Tensor, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.register_buffer("mu", mu.double())
        self.register_buffer("var", var.double())
        self.register_buffer("abar", alphas_cumprod.double())

    def forward(self, sample, timestep):
        abar = self.abar[timestep].to(sample.dtype).reshape(-1, *([1] * (sample.ndim - 1)))
        return (1 - abar).sqrt() / (abar * self.var + 1 - abar) * (sample - abar.sqrt() * self.mu)


class LinearTwinKernel(DiffusionKernel):
    """A DiffusionKernel on a GaussianDenoiser, exposing its affine steps to ``path_law``."""

    def linear_coefficients(self, step):
        zero = torch.zeros((1, *self.event_shape), dtype=torch.float64)
        t = torch.tensor([step])
        offset = self.mean(zero, t)
        slope = self.mean(zero + 1, t) - offset  # every step is diagonal-affine
        std = float(self.step_std(t)[0])
        size = offset.numel()
        return np.diag(slope.reshape(-1).numpy()), None, offset.reshape(-1).numpy(), std * np.eye(size)


def _digits_moments(crop: slice | None = None):
    images, _ = digits_dataset()
    mu, var = images.mean(0).double(), images.var(0).double()
    if crop is not None:
        mu, var = mu[:, crop, crop].contiguous(), var[:, crop, crop].contiguous()
    return mu, var


@pytest.fixture(scope="module")
def twin_path_setup():
    scheduler = DDPMScheduler(clip_sample=False)
    mu, var = _digits_moments(slice(2, 6))
    kernel = LinearTwinKernel(GaussianDenoiser(mu, var, scheduler.alphas_cumprod), scheduler, 100,
                              event_shape=(1, 4, 4))
    x0 = torch.randn((1, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    law = path_law(kernel, x0[0])
    draft = LinearTwinKernel(GaussianDenoiser(0.8 * mu + 0.1, 1.3 * var, scheduler.alphas_cumprod), scheduler, 100,
                             event_shape=(1, 4, 4))
    return kernel, draft, x0.expand(1000, -1, -1, -1).clone(), law


def _paths(result):
    return result.trajectory[1:].transpose(0, 1)


@pytest.mark.parametrize(
    "drafter,verification,coupling",
    [("free", "block", "gamma"), ("frozen", "block", "gamma"), ("free", "token", "reflection"),
     ("free", "token", "gamma"), ("independent", "block", "gamma")],
)
def test_gaussian_twin_path_law(twin_path_setup, drafter, verification, coupling):
    kernel, draft, x0, law = twin_path_setup
    chosen = {"free": gs.FreeDrafter(), "frozen": gs.FrozenDrafter(), "independent": gs.KernelDrafter(draft)}[drafter]
    sampler = gs.SpeculativeSampler(kernel, chosen, draft_length=4, verification=verification, coupling=coupling)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(1), return_trajectory=True)
    assert result.stats.block_efficiency > 1.5, "speculation should accept drafts on this twin"
    assert not path_law_test(_paths(result), law).p_value < ALPHA


def test_gaussian_twin_plain_chain_path_law(twin_path_setup):
    kernel, _, x0, law = twin_path_setup
    result = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(2), return_trajectory=True)
    assert not path_law_test(_paths(result), law).p_value < ALPHA


@pytest.mark.parametrize("mutant", ["always_accept", "draft_instead_of_residual"])
def test_gaussian_twin_path_law_catches_mutants(twin_path_setup, mutant):
    kernel, _, x0, law = twin_path_setup
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=4)
    with planted_mutant(mutant):
        result = sampler.sample(x0, generator=torch.Generator().manual_seed(1), return_trajectory=True)
    assert path_law_test(_paths(result), law).p_value < ALPHA


def closed_form_final_law(scheduler, num_steps, mu, var):
    """Mean and variance of x_K for the Gaussian twin, from the scheduler's alphas in float64.

    Per pixel, E[x0 | x_t] = sqrt(abar) var / (abar var + 1 - abar) x_t + (1 - abar) mu / (abar var + 1 - abar),
    the step mean is Ho et al. eq. 7, c0 E[x0 | x_t] + c1 x_t, and x_T ~ N(0, 1):
    m <- A m + b, v <- A^2 v + sigma^2.
    """
    scheduler = DDPMScheduler.from_config(scheduler.config)
    scheduler.set_timesteps(num_steps)
    abar_all = scheduler.alphas_cumprod.double()
    mean, variance = torch.zeros_like(mu), torch.ones_like(mu)
    one = torch.tensor(1.0, dtype=torch.float64)
    for t in scheduler.timesteps.tolist():
        prev = int(scheduler.previous_timestep(t))
        abar, abar_prev = abar_all[t], (abar_all[prev] if prev >= 0 else one)
        beta = 1 - abar / abar_prev
        slope_x0 = abar.sqrt() * var / (abar * var + 1 - abar)
        offset_x0 = (1 - abar) * mu / (abar * var + 1 - abar)
        c0 = abar_prev.sqrt() * beta / (1 - abar)  # Ho et al. eq. 7
        c1 = (abar / abar_prev).sqrt() * (1 - abar_prev) / (1 - abar)
        slope, offset = c0 * slope_x0 + c1, c0 * offset_x0
        noise_var = (1 - abar_prev) / (1 - abar) * beta if t > 0 else 0.0
        mean, variance = slope * mean + offset, slope**2 * variance + noise_var
    return mean, variance


@pytest.fixture(scope="module")
def twin_final_setup():
    scheduler = DDPMScheduler(clip_sample=False)
    mu, var = _digits_moments()
    kernel = DiffusionKernel(GaussianDenoiser(mu, var, scheduler.alphas_cumprod), scheduler, 1000,
                             event_shape=(1, 8, 8))
    mean, variance = closed_form_final_law(scheduler, 1000, mu, var)
    law = PathLaw(mean=mean.reshape(1, -1).numpy(), covariance=np.diag(variance.reshape(-1).numpy()))
    generator = torch.Generator().manual_seed(0)
    x0 = kernel.initial_state(400, generator).double()
    return kernel, x0, law


def test_gaussian_twin_final_law_k1000(twin_final_setup):
    """Speculative DDPM at K = 1000 (block, free drafter, gamma = 8) has the closed-form final law."""
    kernel, x0, law = twin_final_setup
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=8)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(3))
    assert result.stats.block_efficiency > 4.0
    assert result.stats.sequential_target_calls < 1000 / 4
    assert not path_law_test(result.samples[:, None], law).p_value < ALPHA


def test_gaussian_twin_final_law_catches_mutant(twin_final_setup):
    kernel, x0, law = twin_final_setup
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=8)
    with planted_mutant("draft_instead_of_residual"):
        result = sampler.sample(x0, generator=torch.Generator().manual_seed(3))
    assert path_law_test(result.samples[:, None], law).p_value < ALPHA


def test_gaussian_twin_adapter_mean_matches_closed_form():
    """The adapter's step means on the twin equal the float64 closed form to float32 rounding."""
    scheduler = DDPMScheduler(clip_sample=False)
    mu, var = _digits_moments()
    kernel = DiffusionKernel(GaussianDenoiser(mu, var, scheduler.alphas_cumprod), scheduler, 50,
                             event_shape=(1, 8, 8))
    x = torch.randn((50, 1, 8, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t = torch.arange(50)
    ours = kernel.mean(x, t)
    abar_all = scheduler.alphas_cumprod.double()
    for k in (0, 17, 49):
        step = int(kernel.timesteps[k])
        prev = step - 20
        abar, abar_prev = abar_all[step], (abar_all[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64))
        beta = 1 - abar / abar_prev
        x0_hat = mu + abar.sqrt() * var / (abar * var + 1 - abar) * (x[k] - abar.sqrt() * mu)
        expected = abar_prev.sqrt() * beta / (1 - abar) * x0_hat + (abar / abar_prev).sqrt() * (1 - abar_prev) / (1 - abar) * x[k]
        assert (ours[k] - expected).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def trained_kernel():
    pipeline = load_digits_pipeline()
    return DiffusionKernel(pipeline.unet, pipeline.scheduler, 25)


def test_trained_model_speculative_matches_plain(trained_kernel):
    """Two-sample tests at the middle and last step: speculative (block, free) vs plain chains."""
    generator = torch.Generator().manual_seed(0)
    x0 = trained_kernel.initial_state(200, generator)
    report = check_exactness(trained_kernel, gs.FreeDrafter(), x0, generator, draft_length=4, num_checked_steps=2)
    assert report.speculative_stats.block_efficiency > 1.5
    assert not report.rejects(ALPHA)


def test_trained_model_two_sample_catches_mutant(trained_kernel):
    """The engine bug "draft and verify one step off" is rejected by the same two-sample test.

    (With the clean-image prediction frozen, the free drafter is so close to the target at these
    sizes that "always accept" is only caught at p ~ 0.02; see the slow test below.)
    """
    generator = torch.Generator().manual_seed(1)
    x0 = trained_kernel.initial_state(200, generator)
    with planted_mutant("off_by_one_step"):
        report = check_exactness(trained_kernel, gs.FreeDrafter(), x0, generator, draft_length=4, num_checked_steps=2)
    assert report.rejects(ALPHA)


@pytest.mark.slow
def test_trained_model_two_sample_catches_always_accept():
    pipeline = load_digits_pipeline()
    kernel = DiffusionKernel(pipeline.unet, pipeline.scheduler, 25, frozen_quantity="epsilon")
    generator = torch.Generator().manual_seed(1)
    x0 = kernel.initial_state(400, generator)
    with planted_mutant("always_accept"):
        report = check_exactness(kernel, gs.FreeDrafter(), x0, generator, draft_length=4, num_checked_steps=2)
    assert report.rejects(ALPHA)


@pytest.mark.slow
@pytest.mark.parametrize("drafter", ["frozen", "independent"])
def test_trained_model_other_drafters(trained_kernel, drafter):
    from gaussspec.adapters.ddpm.models import load_draft_unet
    from gaussspec.adapters.ddpm.pipeline import draft_kernel_like

    chosen = gs.FrozenDrafter() if drafter == "frozen" else gs.KernelDrafter(
        draft_kernel_like(trained_kernel, load_draft_unet()))
    generator = torch.Generator().manual_seed(2)
    x0 = trained_kernel.initial_state(400, generator)
    report = check_exactness(trained_kernel, chosen, x0, generator, draft_length=4, num_checked_steps=3)
    assert not report.rejects(ALPHA)


@pytest.mark.slow
def test_trained_model_ddim_eta_and_sample_freezing():
    pipeline = load_digits_pipeline()
    scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    kernel = DiffusionKernel(pipeline.unet, scheduler, 50, eta=0.8, frozen_quantity="sample")
    generator = torch.Generator().manual_seed(3)
    x0 = kernel.initial_state(400, generator)
    report = check_exactness(kernel, gs.FreeDrafter(), x0, generator, draft_length=4, num_checked_steps=3)
    assert not report.rejects(ALPHA)
