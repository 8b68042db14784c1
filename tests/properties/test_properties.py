"""Hypothesis properties of the engine."""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import gaussspec as gs
from gaussspec.testing import chains


@given(
    num_steps=st.integers(1, 25),
    gamma=st.integers(1, 8),
    num_chains=st.integers(1, 6),
    verification=st.sampled_from(["block", "token"]),
)
def test_draft_equal_to_target_accepts_everything(num_steps, gamma, num_chains, verification):
    target = chains.OrnsteinUhlenbeckKernel(num_steps=num_steps)
    same = chains.OrnsteinUhlenbeckKernel(num_steps=num_steps)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(same), gamma, verification)
    x0 = torch.zeros(num_chains, 2, dtype=torch.float64)
    stats = sampler.sample(x0, generator=torch.Generator().manual_seed(0)).stats
    assert stats.rounds == math.ceil(num_steps / (gamma + 1))
    assert stats.accepted_by_position == stats.drafted_by_position


@given(
    num_steps=st.integers(1, 30),
    gamma=st.integers(1, 6),
    num_chains=st.integers(1, 5),
    drafter=st.sampled_from(["kernel", "frozen", "free"]),
    verification=st.sampled_from(["block", "token"]),
    seed=st.integers(0, 2**16),
)
def test_counts_add_up(num_steps, gamma, num_chains, drafter, verification, seed):
    target = chains.DoubleWellLangevinKernel(num_steps=num_steps, step_size=0.05)
    chosen = {
        "kernel": gs.KernelDrafter(chains.DoubleWellLangevinKernel(num_steps=num_steps,
                                                                   step_size=0.05, perturbation=0.5)),
        "frozen": gs.FrozenDrafter(),
        "free": gs.FreeDrafter(),
    }[drafter]
    x0 = target.initial_state(num_chains)
    result = gs.SpeculativeSampler(target, chosen, gamma, verification).sample(
        x0, generator=torch.Generator().manual_seed(seed), return_trajectory=True)
    stats = result.stats
    assert stats.steps == num_chains * num_steps
    assert sum(stats.accepted_length_histogram) == stats.chain_rounds
    assert sum(k * n for k, n in enumerate(stats.accepted_length_histogram)) + stats.chain_rounds \
        == stats.steps
    assert stats.draft_evaluations == sum(stats.drafted_by_position)
    extra = stats.rounds if drafter == "frozen" else 0
    assert stats.sequential_target_calls == stats.rounds + extra
    # every drafted state plus each round's start state is evaluated exactly once
    assert stats.target_evaluations == stats.draft_evaluations + stats.chain_rounds
    assert all(a <= d for a, d in zip(stats.accepted_by_position, stats.drafted_by_position))
    assert torch.equal(result.trajectory[-1], result.samples)
    assert torch.isfinite(result.trajectory).all()


@given(perturbation=st.floats(0.2, 1.5), seed=st.integers(0, 1000))
def test_block_efficiency_never_below_token(perturbation, seed):
    """Block >= token in expectation; with 2000 chains and common seeds, within 2% noise."""
    target = chains.OrnsteinUhlenbeckKernel(num_steps=10)
    draft = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(num_steps=10, perturbation=perturbation))
    x0 = torch.zeros(2000, 2, dtype=torch.float64)
    efficiency = {}
    for verification in ("block", "token"):
        sampler = gs.SpeculativeSampler(target, draft, 4, verification)
        efficiency[verification] = sampler.sample(
            x0, generator=torch.Generator().manual_seed(seed)).stats.block_efficiency
    assert efficiency["block"] >= 0.98 * efficiency["token"]


def test_block_strictly_better_where_drafts_drift():
    target = chains.OrnsteinUhlenbeckKernel(num_steps=30)
    draft = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(num_steps=30, perturbation=0.8))
    x0 = torch.zeros(4000, 2, dtype=torch.float64)
    block = gs.SpeculativeSampler(target, draft, 6, "block").sample(
        x0, generator=torch.Generator().manual_seed(0)).stats
    token = gs.SpeculativeSampler(target, draft, 6, "token").sample(
        x0, generator=torch.Generator().manual_seed(1)).stats
    # standard error of a block efficiency over ~20k chain-rounds is below 0.01
    assert block.block_efficiency > token.block_efficiency + 0.05


@given(delta_scale=st.floats(0.05, 3.0), seed=st.integers(0, 1000))
def test_residual_draws_lie_beyond_the_bisecting_hyperplane(delta_scale, seed):
    """Token-wise residual steps satisfy q(y) >= p(y): they are on the target's side."""
    from gaussspec.coupling import residual_noise

    generator = torch.Generator().manual_seed(seed)
    whitened = torch.randn(64, 5, generator=generator, dtype=torch.float64) * delta_scale
    delta = whitened.norm(dim=1)
    fresh = torch.randn(64, 5, generator=generator, dtype=torch.float64)
    u = torch.rand(64, generator=generator, dtype=torch.float64).numpy()
    noise = residual_noise(whitened, delta, np.zeros(64), u, fresh)
    log_ratio = (noise * whitened).sum(1) - 0.5 * delta**2  # <xi, Delta> - delta^2/2
    assert (log_ratio >= -1e-9).all()
