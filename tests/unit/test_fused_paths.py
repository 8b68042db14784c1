"""The compiled CPU paths (isotropic noise, and a shared dense factor in whitened coordinates)
against the general torch paths, draw for draw.

Both paths consume the generator identically, so with the same seed they must give the same
accepted lengths and the same states up to rounding; the general path is itself covered by the
exactness suite for every covariance kind.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec import sampler as engine
from gaussspec.compiled import (
    REFLECTION,
    RESIDUAL_DRAW,
    TARGET_DRAW,
    fused_next_states,
    fused_verify,
)
from gaussspec.coupling import reflection_noise, residual_noise
from gaussspec.residual import block_accept_lengths, sample_residual
from gaussspec.testing.chains import GaussianDataDDPMKernel, OrnsteinUhlenbeckKernel
from gaussspec.verification import log_ratios, whitened_gaps


def _general_paths_only(monkeypatch):
    monkeypatch.setattr(engine._Run, "_step_compiled", lambda self, *args: None)


def _count_general_rounds(monkeypatch) -> list:
    """A list that gets one entry per round the general path runs."""
    calls = []
    general = engine._Run._step_general
    monkeypatch.setattr(engine._Run, "_step_general",
                        lambda self, *args: calls.append(1) or general(self, *args))
    return calls


def _run(target, drafter, x0, verification, coupling, seed=3):
    sampler = gs.SpeculativeSampler(target, drafter, 3, verification, coupling)
    return sampler.sample(x0, generator=torch.Generator().manual_seed(seed), return_trajectory=True)


def _dense_ou(perturbation=0.0):
    return OrnsteinUhlenbeckKernel(dimension=5, num_steps=11, covariance_kind="dense",
                                   perturbation=perturbation)


class _DiagonalOU(OrnsteinUhlenbeckKernel):
    """ULA on N(mu, I) with a diagonal noise factor (any Gaussian kernel serves the comparison)."""

    def __init__(self, perturbation=0.0, zero=False):
        super().__init__(dimension=5, num_steps=11, perturbation=perturbation)
        self.std = torch.linspace(0.5, 1.5, 5, dtype=torch.float64) * (2 * self.h) ** 0.5
        if zero:
            self.std[2] = 0.0  # a coordinate without noise: mutually singular where gaps reach it

    def covariance(self, t):
        return gs.DiagonalCovariance(self.std)


_SHARED = (_dense_ou, _DiagonalOU)  # one invertible L for every slot: the whitened path


CASES = {
    "ou-free-block": (lambda: OrnsteinUhlenbeckKernel(dimension=5, num_steps=11), "free", "block", "gamma"),
    "ou-kernel-token-reflection": (
        lambda: OrnsteinUhlenbeckKernel(dimension=5, num_steps=11), "kernel", "token", "reflection"),
    "ou_dense-free-block": (_dense_ou, "free", "block", "gamma"),
    "ou_dense-kernel-token-reflection": (_dense_ou, "kernel", "token", "reflection"),
    "ou_dense-frozen-token": (_dense_ou, "frozen", "token", "gamma"),
    "ou_diagonal-free-block": (_DiagonalOU, "free", "block", "gamma"),
    "ou_diagonal-kernel-token-reflection": (_DiagonalOU, "kernel", "token", "reflection"),
    "ddpm-frozen-block": (lambda: GaussianDataDDPMKernel(dimension=4, num_steps=10), "frozen", "block", "gamma"),
    "ddpm-kernel-token": (lambda: GaussianDataDDPMKernel(dimension=4, num_steps=10), "kernel", "token", "gamma"),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_and_general_paths_agree(case, dtype, monkeypatch):
    make, drafter_name, verification, coupling = CASES[case]
    target = make()
    if drafter_name == "kernel":
        draft = make(0.4) if make in _SHARED else type(target)(
            **{"dimension": target.event_shape[0], "num_steps": target.num_steps,
               "perturbation": 0.4})
        drafter = gs.KernelDrafter(draft)
    else:
        drafter = drafter_name
    x0 = target.initial_state(64, torch.Generator().manual_seed(1)).to(dtype)
    fast = _run(target, drafter, x0, verification, coupling)
    with monkeypatch.context() as patch:
        _general_paths_only(patch)
        slow = _run(target, drafter, x0, verification, coupling)
    assert fast.stats.accepted_length_histogram == slow.stats.accepted_length_histogram
    assert fast.stats.rounds == slow.stats.rounds
    rtol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(fast.trajectory, slow.trajectory, rtol=rtol, atol=rtol)
    assert sum(fast.stats.accepted_length_histogram[:-1]) > 0  # rejections happened: residuals ran


@pytest.mark.parametrize("drafter", ["free", "frozen", "kernel"])
@pytest.mark.parametrize("make", [_dense_ou, _DiagonalOU], ids=["dense", "diagonal"])
def test_a_shared_factor_takes_the_compiled_path(make, drafter, monkeypatch):
    """One invertible L for every slot: no round falls back to the general path, except with
    float32 states and a dense L (whitening them in their own precision is not exact enough)."""
    calls = _count_general_rounds(monkeypatch)
    target = make()
    chosen = gs.KernelDrafter(make(0.4)) if drafter == "kernel" else drafter
    for dtype in (torch.float64, torch.float32):
        calls.clear()
        result = _run(target, chosen, target.initial_state(8).to(dtype), "block", "gamma")
        general_rounds = dtype == torch.float32 and make is _dense_ou
        assert len(calls) == (result.stats.rounds if general_rounds else 0)


def test_a_diagonal_with_a_zero_std_keeps_the_general_path(monkeypatch):
    """A zero std is no invertible L (mutually singular slots): every round runs the general
    path, which handles them."""
    calls = _count_general_rounds(monkeypatch)
    target = _DiagonalOU(zero=True)
    result = _run(target, gs.KernelDrafter(_DiagonalOU(0.4, zero=True)),
                  target.initial_state(8), "block", "gamma")
    assert len(calls) == result.stats.rounds


@pytest.mark.parametrize("token", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_verify_matches_the_general_functions(dtype, token):
    generator = torch.Generator().manual_seed(0)
    n, width, d = 6, 3, 7
    means = torch.randn(n, width + 1, d, generator=generator, dtype=dtype)
    drafts = means[:, :width] + 0.3 * torch.randn(n, width, d, generator=generator, dtype=dtype)
    noise = torch.randn(n, width, d, generator=generator, dtype=dtype)
    lengths = np.array([3, 3, 2, 0, 1, 3])
    uniforms = torch.rand(n, width, generator=generator, dtype=torch.float64).numpy()
    residual_uniforms = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    std = torch.rand(n, width + 1, generator=generator, dtype=torch.float64).numpy() + 0.2
    path = torch.cat([means[:, :1], drafts + torch.as_tensor(std[:, :width, None], dtype=dtype) * noise], 1)
    grids = means.numpy(), path.numpy(), noise.numpy()
    found = fused_verify(*grids, lengths, std, uniforms, residual_uniforms, token, False)
    assert found.status == 0
    covariance = gs.IsotropicCovariance(torch.as_tensor(std[:, :width].reshape(-1)))
    whitened, delta = whitened_gaps(covariance, means[:, :width].reshape(n * width, d),
                                    drafts.reshape(n * width, d), 1e-6)
    ratio = log_ratios(noise.reshape(n * width, d), whitened, delta)
    delta, ratio = delta.numpy().reshape(n, width), ratio.numpy().reshape(n, width)
    valid = np.arange(width)[None, :] < lengths[:, None]
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(found.delta[valid], delta[valid], rtol=tolerance)
    np.testing.assert_allclose(found.log_ratio[valid], ratio[valid], rtol=tolerance, atol=tolerance)
    tau, log_w = block_accept_lengths(np.where(valid, ratio, 0), np.where(valid, delta, 0), uniforms,
                                      lengths, token)
    np.testing.assert_array_equal(found.tau, tau)
    rejected = (tau < lengths) & (delta[np.arange(n), np.minimum(tau, width - 1)] > 0)
    assert rejected.any() and (found.mode[rejected] == RESIDUAL_DRAW).all()
    assert (found.mode[~rejected] == TARGET_DRAW).all()
    rows = np.nonzero(rejected)[0]
    s_star, offset = sample_residual(log_w[rows], delta[rows, tau[rows]], residual_uniforms[rows])
    np.testing.assert_allclose(found.shift[rows], s_star + offset, rtol=1e-6)
    # a zero std at a drafted slot (mutually singular kernels) is left to the general path
    std[2, 1] = 0.0
    assert fused_verify(*grids, lengths, std, uniforms, residual_uniforms, token, False).status == 2
    std[2, 1], grids[0][4, 0, 3] = 1.0, float("nan")
    assert fused_verify(*grids, lengths, std, uniforms, residual_uniforms, token, False).status == 1


def test_fused_next_states_matches_couplings():
    generator = torch.Generator().manual_seed(1)
    n, width, d, std = 3, 2, 6, 0.5
    means = torch.randn(n, width + 1, d, generator=generator, dtype=torch.float64)
    drafts = torch.randn(n, width, d, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, width, d, generator=generator, dtype=torch.float64)
    fresh = torch.randn(n, d, generator=generator, dtype=torch.float64)
    tau = np.array([2, 0, 1])
    mode = np.array([TARGET_DRAW, RESIDUAL_DRAW, REFLECTION])
    gap = (means[1, 0] - drafts[1, 0]) / std
    delta = gap.norm().reshape(1)
    s_star, offset = sample_residual(np.array([-0.3]), delta.numpy(), np.array([0.4]))
    shift = np.array([0.0, (s_star + offset)[0], 0.0])
    std_grid = np.full((n, width + 1), std)
    path = torch.cat([means[:, :1], drafts + std * noise], 1)  # x_{i+1} = m_p + std xi
    grids = means.numpy(), path.numpy(), noise.numpy(), fresh.numpy()
    out = torch.empty_like(fresh)
    assert fused_next_states(*grids, tau, mode, shift, std_grid, out.numpy())
    torch.testing.assert_close(out[0], means[0, 2] + std * fresh[0])
    residual = residual_noise(gap[None], delta, np.array([-0.3]), np.array([0.4]), fresh[1:2])
    torch.testing.assert_close(out[1], drafts[1, 0] + std * residual[0])
    gap2 = (means[2, 1] - drafts[2, 1]) / std
    reflected = reflection_noise(noise[2:3, 1], gap2[None], gap2.norm().reshape(1))
    torch.testing.assert_close(out[2], means[2, 1] + std * reflected[0])
    means[0, 2, 3] = float("nan")
    assert not fused_next_states(*grids, tau, mode, shift, std_grid, out.numpy())


class _NaNIsotropic(gs.GaussianKernel):
    """Isotropic noise; NaN in the mean at step 3 (every chain: chain 0 is named first)."""

    def __init__(self, in_draft=False):
        self.num_steps, self.event_shape, self.in_draft = 6, (2,), in_draft

    def covariance(self, t):
        return gs.IsotropicCovariance(0.5)

    def mean(self, x, t):
        out = 0.9 * x
        out[t == 3, 1] = float("nan")
        return out


class _Finite(_NaNIsotropic):
    def mean(self, x, t):
        return 0.9 * x


def test_nan_on_the_compiled_path_names_step_and_chain():
    x0 = torch.zeros(3, 2)
    sampler = gs.SpeculativeSampler(_NaNIsotropic(), gs.KernelDrafter(_Finite()), 4)
    with pytest.raises(gs.NonFiniteMeanError,
                       match=r"_NaNIsotropic mean is NaN or inf at step t=3 for chain 0"):
        sampler.sample(x0, generator=torch.Generator().manual_seed(0))


def test_a_nan_draft_mean_on_the_compiled_path_drafts_the_round_again():
    """The compiled step finds the draft's NaN (its status), the general one drafts the round
    again with m_p := x there; the run completes (the law: tests/statistical)."""
    x0 = torch.zeros(3, 2)
    sampler = gs.SpeculativeSampler(_Finite(), gs.KernelDrafter(_NaNIsotropic()), 4)
    with pytest.warns(RuntimeWarning, match="_NaNIsotropic draft's mean was not finite"):
        result = sampler.sample(x0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.samples).all()
    assert result.stats.sequential_target_calls > result.stats.rounds
