"""The adaptive draft length stays exact and picks plain steps when speculation cannot pay."""

import time

import pytest
import torch

import gaussspec as gs
from gaussspec import testing as gt
from gaussspec.testing import chains

ALPHA = 1e-3  # same false-alarm budget as test_exactness.py


@pytest.mark.parametrize("chain", ["ou", "ar2", "ddpm"])
@pytest.mark.parametrize("drafter", ["kernel", "free", "frozen"])
def test_adaptive_draft_length_is_exact(chain, drafter):
    build = {"ou": lambda p: chains.OrnsteinUhlenbeckKernel(num_steps=20, perturbation=p),
             "ar2": lambda p: chains.AR2Kernel(num_steps=20, perturbation=p),
             "ddpm": lambda p: chains.GaussianDataDDPMKernel(num_steps=20, perturbation=p)}[chain]
    target = build(0.0)
    chosen = {"kernel": gs.KernelDrafter(build(0.3)), "free": gs.FreeDrafter(),
              "frozen": gs.FrozenDrafter()}[drafter]
    policy = gs.AdaptiveDraftLength(max_draft_length=6, initial_draft_length=2)
    x0 = torch.zeros(3000, *target.event_shape, dtype=torch.float64)
    result = gs.SpeculativeSampler(target, chosen, policy).sample(
        x0, generator=torch.Generator().manual_seed(4), return_trajectory=True)
    verdict = gt.path_law_test(result.trajectory[1:].transpose(0, 1), gt.path_law(target, x0[0]))
    assert not verdict.rejects(ALPHA), verdict


class CostlyOU(chains.OrnsteinUhlenbeckKernel):
    """An OU target whose evaluation costs 1 ms per state, like a network on a CPU."""

    def evaluate(self, x, t):
        time.sleep(0.001 * len(x))
        return super().evaluate(x, t)


def test_adaptive_goes_plain_when_drafts_are_useless():
    """A draft that is never accepted: the policy settles on g = 0 (plain steps)."""
    target = CostlyOU(dimension=2, num_steps=150)
    hopeless = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(dimension=2, num_steps=150,
                                                                perturbation=40.0))
    policy = gs.AdaptiveDraftLength(max_draft_length=8, initial_draft_length=4)
    x0 = torch.full((4, 2), 3.0, dtype=torch.float64)
    stats = gs.SpeculativeSampler(target, hopeless, policy).sample(
        x0, generator=torch.Generator().manual_seed(0)).stats
    assert stats.draft_evaluations < 0.2 * 4 * 150  # mostly plain rounds
    assert stats.rounds > 0.8 * 150


class LatencyOU(chains.OrnsteinUhlenbeckKernel):
    """An OU target whose call costs 2 ms whatever the batch (latency-bound, like a GPU)."""

    def evaluate(self, x, t):
        time.sleep(0.002)
        return super().evaluate(x, t)


def test_adaptive_drafts_long_when_drafts_are_perfect():
    """Latency-bound target, perfect drafts: long drafts pay (with a throughput-bound target every
    draft length costs about the same per step, so there is nothing to assert)."""
    target = LatencyOU(dimension=2, num_steps=150)
    perfect = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(dimension=2, num_steps=150))
    policy = gs.AdaptiveDraftLength(max_draft_length=8)
    stats = gs.SpeculativeSampler(target, perfect, policy).sample(
        torch.zeros(4, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(0)).stats
    assert stats.block_efficiency > 4.0


def test_adaptive_settings_are_validated():
    with pytest.raises(ValueError, match="max_draft_length"):
        gs.AdaptiveDraftLength(max_draft_length=0)
    with pytest.raises(ValueError, match="decay"):
        gs.AdaptiveDraftLength(decay=1.0)
