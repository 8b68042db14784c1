"""Parity of gaussspec.adapters.ddpm.DiffusionKernel with diffusers' own sampling loop.

The reference loop is DDPMPipeline's: initial noise ``randn(shape, generator)``, then for each
scheduler timestep ``t``: ``x = scheduler.step(model(x, t), t, x, generator=generator).prev_sample``.
The adapter chain starts from ``kernel.initial_state(B, generator)`` with an identically seeded
generator and adds ``covariance(k).apply(noise)`` with the same per-step noise draws that diffusers
makes (DDPM draws only when ``t > 0``; DDIM draws every step when ``eta > 0``).
Acceptance: max abs difference < 1e-5 in float32 for every supported configuration.
"""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.adapters.ddpm import DiffusionKernel  # noqa: E402

torch.set_num_threads(1)

TOL = 1e-5
SHAPE = (2, 6, 6)
BATCH = 3


class ToyDenoiser(torch.nn.Module):
    """A small deterministic nonlinear ``model(sample, timestep)`` with per-chain timesteps.

    It is the exact posterior denoiser for Gaussian data ``x0 ~ N(mu, s^2 I)`` under the default
    DDPM training schedule, plus a nonlinear wiggle, expressed in the requested prediction type.
    Chains stay O(1) (so float32 rounding stays well below the tolerance), and ``s`` is large
    enough that clipping and thresholding of x0 bite.
    """

    def __init__(self, prediction_type: str = "epsilon", seed: int = 0, wiggle: float = 0.2):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(SHAPE, generator=gen) * 0.5 + 1.0)
        self.mu = torch.nn.Parameter(torch.randn(SHAPE, generator=gen) * 0.4)
        self.register_buffer("alphas_cumprod", DDPMScheduler().alphas_cumprod.clone())
        self.prediction_type = prediction_type
        self.wiggle = wiggle
        self.data_var = 0.8**2

    def forward(self, sample, timestep):
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        abar = self.alphas_cumprod[timestep].to(sample.dtype).reshape(-1, *([1] * (sample.ndim - 1)))
        sa, sb = abar.sqrt(), (1 - abar).sqrt()
        centred = sample - sa * self.mu
        eps = sb / (abar * self.data_var + 1 - abar) * centred  # E[eps | x_t] for Gaussian data
        eps = eps + self.wiggle * torch.tanh(sample * self.weight + 0.3 * sample.roll(1, dims=-1))
        x0 = (sample - sb * eps) / sa
        if self.prediction_type == "epsilon":
            return (eps,)
        if self.prediction_type == "sample":
            return (x0,)
        return (sa * eps - sb * x0,)


def diffusers_loop(model, scheduler, num_steps, seed, eta=None, use_clipped=False):
    """DDPMPipeline / DDIMPipeline style loop driven by scheduler.step."""
    scheduler.set_timesteps(num_steps)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((BATCH, *SHAPE), generator=generator)
    for t in scheduler.timesteps:
        out = model(x, t)
        out = out.sample if hasattr(out, "sample") else out[0]
        if eta is None:
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        else:
            x = scheduler.step(out, t, x, eta=eta, use_clipped_model_output=use_clipped,
                               generator=generator).prev_sample
    return x


def adapter_loop(kernel, seed):
    """The adapter's plain chain with diffusers' noise draws."""
    generator = torch.Generator().manual_seed(seed)
    x = kernel.initial_state(BATCH, generator)
    for k in range(kernel.num_steps):
        t = torch.full((BATCH,), k, dtype=torch.int64)
        mean = kernel.mean(x, t)
        draws = kernel.kind == "ddim" and kernel.eta > 0 or kernel.kind == "ddpm" and int(kernel.timesteps[k]) > 0
        if draws:
            noise = torch.randn(x.shape, generator=generator)
            x = mean + kernel.covariance(t).apply(noise, kernel.event_shape)
        else:
            assert float(kernel.covariance(t).std.abs().max()) == 0.0 or kernel.kind == "ddim"
            x = mean
    return x


def clip_options():
    return [
        {"clip_sample": False, "thresholding": False},
        {"clip_sample": True, "clip_sample_range": 1.0, "thresholding": False},
        {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.6},
    ]


DDPM_CASES = list(
    itertools.product(
        ["fixed_small", "fixed_large", "fixed_small_log"],
        ["epsilon", "sample", "v_prediction"],
        range(3),
        ["epsilon", "sample", "model_output"],
    )
)


@pytest.mark.parametrize("variance_type,prediction_type,clip_index,frozen", DDPM_CASES)
def test_ddpm_parity(variance_type, prediction_type, clip_index, frozen):
    model = ToyDenoiser(prediction_type)
    config = dict(variance_type=variance_type, prediction_type=prediction_type, **clip_options()[clip_index])
    scheduler = DDPMScheduler(num_train_timesteps=1000, **config)
    kernel = DiffusionKernel(model, DDPMScheduler(**config), 37, frozen_quantity=frozen, event_shape=SHAPE)
    reference = diffusers_loop(model, scheduler, 37, seed=11)
    ours = adapter_loop(kernel, seed=11)
    assert (ours - reference).abs().max().item() < TOL
    assert torch.equal(ours, reference), "the target mean uses diffusers' own formulas: bitwise equal"


DDIM_CASES = list(
    itertools.product(
        [0.0, 0.3, 1.0],
        ["epsilon", "sample", "v_prediction"],
        range(3),
        [False, True],
        ["epsilon", "sample"],
    )
)


@pytest.mark.parametrize("eta,prediction_type,clip_index,use_clipped,frozen", DDIM_CASES)
def test_ddim_parity(eta, prediction_type, clip_index, use_clipped, frozen):
    model = ToyDenoiser(prediction_type)
    config = dict(prediction_type=prediction_type, **clip_options()[clip_index])
    reference = diffusers_loop(model, DDIMScheduler(**config), 25, seed=5, eta=eta, use_clipped=use_clipped)
    kernel = DiffusionKernel(model, DDIMScheduler(**config), 25, eta=eta, frozen_quantity=frozen,
                             use_clipped_model_output=use_clipped, event_shape=SHAPE)
    ours = adapter_loop(kernel, seed=5)
    assert (ours - reference).abs().max().item() < TOL
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_steps", [1, 7, 100, 333])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_parity_timestep_spacings(spacing, num_steps, variance_type):
    model = ToyDenoiser()
    config = dict(timestep_spacing=spacing, variance_type=variance_type)
    reference = diffusers_loop(model, DDPMScheduler(**config), num_steps, seed=3)
    kernel = DiffusionKernel(model, DDPMScheduler(**config), num_steps, event_shape=SHAPE)
    assert kernel.num_steps == len(kernel.timesteps)
    assert (adapter_loop(kernel, seed=3) - reference).abs().max().item() < TOL


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_parity_spacings_and_final_alpha(spacing):
    model = ToyDenoiser()
    for set_alpha_to_one in (True, False):
        config = dict(timestep_spacing=spacing, set_alpha_to_one=set_alpha_to_one, steps_offset=1)
        reference = diffusers_loop(model, DDIMScheduler(**config), 40, seed=8, eta=0.7)
        kernel = DiffusionKernel(model, DDIMScheduler(**config), 40, eta=0.7, event_shape=SHAPE)
        assert (adapter_loop(kernel, seed=8) - reference).abs().max().item() < TOL


@pytest.mark.parametrize("spacing,variance_type", [("leading", "fixed_small"), ("trailing", "fixed_large")])
def test_ddpm_parity_1000_steps(spacing, variance_type):
    model = ToyDenoiser("v_prediction")
    config = dict(timestep_spacing=spacing, variance_type=variance_type, prediction_type="v_prediction")
    reference = diffusers_loop(model, DDPMScheduler(**config), 1000, seed=4)
    kernel = DiffusionKernel(model, DDPMScheduler(**config), 1000, event_shape=SHAPE)
    assert (adapter_loop(kernel, seed=4) - reference).abs().max().item() < TOL


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=6, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


def test_ddpm_parity_unet():
    unet = tiny_unet()
    scheduler = DDPMScheduler()
    with torch.no_grad():
        reference = diffusers_loop(unet, scheduler, 200, seed=1)
    kernel = DiffusionKernel(unet, DDPMScheduler(), 200)
    assert kernel.event_shape == SHAPE and kernel.num_steps == 200
    ours = adapter_loop(kernel, seed=1)
    assert (ours - reference).abs().max().item() < TOL


def test_ddim_parity_unet():
    unet = tiny_unet(1)
    with torch.no_grad():
        reference = diffusers_loop(unet, DDIMScheduler(), 50, seed=2, eta=0.5)
    kernel = DiffusionKernel(unet, DDIMScheduler(), 50, eta=0.5)
    assert (adapter_loop(kernel, seed=2) - reference).abs().max().item() < TOL


def test_split_reproduces_mean_and_final_step_is_noiseless():
    kernel = DiffusionKernel(ToyDenoiser(), DDPMScheduler(), 10, event_shape=SHAPE)
    x = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 3, 9, 9])
    assert torch.equal(kernel.mean(x, t), kernel.mean_from(x, t, kernel.evaluate(x, t)))
    std = kernel.covariance(t).std
    assert std[2] == 0 and std[3] == 0 and (std[:2] > 0).all()
    assert int(kernel.timesteps[-1]) == 0


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
@pytest.mark.parametrize("frozen", ["epsilon", "sample", "model_output"])
def test_stale_evaluation_plugs_in_the_frozen_quantity(kind, frozen):
    """mean_from at a new state with an old evaluation holds the chosen quantity fixed."""
    model = ToyDenoiser("v_prediction")
    scheduler = DDPMScheduler(prediction_type="v_prediction", clip_sample=False) if kind == "ddpm" else \
        DDIMScheduler(prediction_type="v_prediction", clip_sample=False)
    kernel = DiffusionKernel(model, scheduler, 10, eta=None if kind == "ddpm" else 0.6,
                             frozen_quantity=frozen, event_shape=SHAPE)
    generator = torch.Generator().manual_seed(1)
    x_old, x_new = torch.randn((2, 2, *SHAPE), generator=generator)
    t_old, t_new = torch.tensor([3, 3]), torch.tensor([4, 5])
    stale = kernel.evaluate(x_old, t_old)
    mean = kernel.mean_from(x_new, t_new, stale)
    ab = kernel.scheduler.alphas_cumprod
    v = model(x_old, kernel.timesteps[t_old])[0]
    a_old = ab[kernel.timesteps[t_old]].reshape(-1, 1, 1, 1)
    eps_old = a_old.sqrt() * v + (1 - a_old).sqrt() * x_old
    x0_old = a_old.sqrt() * x_old - (1 - a_old).sqrt() * v
    a_new = ab[kernel.timesteps[t_new]].reshape(-1, 1, 1, 1)
    if frozen == "epsilon":
        eps, x0 = eps_old, (x_new - (1 - a_new).sqrt() * eps_old) / a_new.sqrt()
    elif frozen == "sample":
        x0, eps = x0_old, (x_new - a_new.sqrt() * x0_old) / (1 - a_new).sqrt()
    else:  # the raw v output, reinterpreted at the new state
        x0, eps = a_new.sqrt() * x_new - (1 - a_new).sqrt() * v, a_new.sqrt() * v + (1 - a_new).sqrt() * x_new
    timestep, one = kernel.timesteps[t_new], torch.tensor(1.0)
    if kind == "ddpm":  # Ho et al. eq. 7 with the scheduler's own previous timestep
        prev = torch.tensor([int(kernel.scheduler.previous_timestep(int(ts))) for ts in timestep])
        a_prev = torch.where(prev >= 0, ab[prev.clamp(min=0)], one).reshape(-1, 1, 1, 1)
        beta = 1 - a_new / a_prev
        expected = a_prev.sqrt() * beta / (1 - a_new) * x0 + (a_new / a_prev).sqrt() * (1 - a_prev) / (1 - a_new) * x_new
    else:  # Song et al. eq. 12 and 16
        prev = timestep - 1000 // 10
        a_prev = torch.where(prev >= 0, ab[prev.clamp(min=0)], one).reshape(-1, 1, 1, 1)
        sigma2 = 0.6**2 * (1 - a_prev) / (1 - a_new) * (1 - a_new / a_prev)
        expected = a_prev.sqrt() * x0 + (1 - a_prev - sigma2).sqrt() * eps
    assert (mean - expected).abs().max().item() < 1e-5
    # at its own state the same evaluation gives the exact target mean
    assert torch.equal(kernel.mean_from(x_old, t_old, stale), kernel.mean(x_old, t_old))


def test_per_chain_timesteps_match_single_step_calls():
    """A batch whose chains sit at different steps gives each chain its own step's mean."""
    unet = tiny_unet(2)
    kernel = DiffusionKernel(unet, DDPMScheduler(), 20)
    x = torch.randn((3, *SHAPE), generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0, 7, 19])
    batched = kernel.mean(x, t)
    for b in range(3):
        single = kernel.mean(x[b:b + 1], t[b:b + 1])
        assert (batched[b] - single[0]).abs().max().item() < 1e-6


def test_covariance_is_shared_with_a_draft():
    target = DiffusionKernel(tiny_unet(0), DDPMScheduler(), 50)
    draft = DiffusionKernel(tiny_unet(1), DDPMScheduler(), 50)
    t = torch.arange(50)
    assert isinstance(target.covariance(t), gs.IsotropicCovariance)
    assert torch.equal(target.covariance(t).std, draft.covariance(t).std)


def test_half_precision_model_keeps_float32_mean():
    unet = tiny_unet(3).to(torch.bfloat16)
    kernel = DiffusionKernel(unet, DDPMScheduler(), 10)
    x = kernel.initial_state(2, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32
    t = torch.tensor([0, 5])
    assert all(part.dtype == torch.float32 for part in kernel.evaluate(x, t)[:3])
    assert kernel.mean(x, t).dtype == torch.float32
    assert kernel.mean(x.double(), t).dtype == torch.float64


def test_caller_scheduler_is_not_modified():
    scheduler = DDPMScheduler()
    DiffusionKernel(ToyDenoiser(), scheduler, 10, event_shape=SHAPE)
    assert scheduler.num_inference_steps is None and len(scheduler.timesteps) == 1000


@pytest.mark.parametrize("variance_type", ["learned", "learned_range", "fixed_large_log"])
def test_learned_variances_are_refused(variance_type):
    with pytest.raises(ValueError, match="variance_type"):
        DiffusionKernel(ToyDenoiser(), DDPMScheduler(variance_type=variance_type), 10, event_shape=SHAPE)


def test_bad_arguments_are_refused():
    model = ToyDenoiser()
    with pytest.raises(ValueError, match="frozen_quantity"):
        DiffusionKernel(model, DDPMScheduler(), 10, frozen_quantity="score", event_shape=SHAPE)
    with pytest.raises(ValueError, match="eta"):
        DiffusionKernel(model, DDPMScheduler(), 10, eta=0.5, event_shape=SHAPE)
    with pytest.raises(ValueError, match="eta"):
        DiffusionKernel(model, DDIMScheduler(), 10, eta=1.5, event_shape=SHAPE)
    with pytest.raises(ValueError, match="num_inference_steps"):
        DiffusionKernel(model, DDPMScheduler(), 0, event_shape=SHAPE)
    with pytest.raises(ValueError, match="event_shape"):
        DiffusionKernel(model, DDPMScheduler(), 10)
    with pytest.raises(TypeError, match="DDPMScheduler"):
        from diffusers import EulerDiscreteScheduler

        DiffusionKernel(model, EulerDiscreteScheduler(), 10, event_shape=SHAPE)
    double_output = lambda sample, timestep: torch.cat([sample, sample], dim=1)  # noqa: E731
    kernel = DiffusionKernel(double_output, DDPMScheduler(), 10, event_shape=SHAPE)
    with pytest.raises(ValueError, match="variance"):
        kernel.evaluate(torch.zeros((1, *SHAPE)), torch.tensor([0]))


def _engine_noises(seed, kernel, batch):
    """The draws gaussspec.sample_chain makes after ``initial_state``: one N(0, I) per step, in
    the states' dtype."""
    generator = torch.Generator().manual_seed(seed)
    x0 = kernel.initial_state(batch, generator)
    noises = [torch.randn((batch, *kernel.event_shape), generator=generator, dtype=x0.dtype)
              for _ in range(kernel.num_steps)]
    return x0, noises


@pytest.mark.parametrize(
    "kind,config,eta",
    [
        ("ddpm", dict(variance_type="fixed_small"), None),
        ("ddpm", dict(variance_type="fixed_large", prediction_type="v_prediction"), None),
        ("ddpm", dict(prediction_type="sample", thresholding=True, sample_max_value=1.6), None),
        ("ddim", dict(), 0.5),
        ("ddim", dict(prediction_type="v_prediction"), 1.0),
    ],
)
def test_sample_chain_parity_with_diffusers(kind, config, eta, monkeypatch):
    """gaussspec.sample_chain on the adapter equals diffusers' loop fed the engine's noise draws."""
    import diffusers.schedulers.scheduling_ddim as ddim_module
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    model = ToyDenoiser(config.get("prediction_type", "epsilon"))
    make = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    kernel = DiffusionKernel(model, make(**config), 30, eta=eta, event_shape=SHAPE)
    generator = torch.Generator().manual_seed(9)
    result = gs.sample_chain(kernel, kernel.initial_state(BATCH, generator), generator=generator)
    x, noises = _engine_noises(9, kernel, BATCH)
    current = {}
    fake = lambda shape, generator=None, device=None, dtype=None, layout=None: current["noise"].to(dtype)  # noqa: E731
    monkeypatch.setattr(ddpm_module if kind == "ddpm" else ddim_module, "randn_tensor", fake)
    scheduler = make(**config)
    scheduler.set_timesteps(30)
    for k, t in enumerate(scheduler.timesteps):
        current["noise"] = noises[k]
        out = model(x, t)[0]
        extra = {} if eta is None else {"eta": eta}
        x = scheduler.step(out, t, x, **extra).prev_sample
    assert (result.samples - x).abs().max().item() < TOL
    assert result.stats.sequential_target_calls == 30
    assert not torch.equal(noises[0], noises[1])

