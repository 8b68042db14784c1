"""The adaptive draft length stays exact and picks plain steps when speculation cannot pay."""

import time

import attrs
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


class SlowCallOU(chains.OrnsteinUhlenbeckKernel):
    """An OU target whose evaluation costs 2 ms whatever the batch (latency-bound, like a GPU)."""

    def evaluate(self, x, t):
        time.sleep(0.002)
        return super().evaluate(x, t)


def test_adaptive_drafts_long_when_drafts_are_perfect():
    """Latency-bound target, perfect drafts: long drafts. (On CostlyOU, which costs 1 ms per
    state, a round of g perfect drafts costs what its g + 1 plain steps cost, and plain wins.)"""
    target = SlowCallOU(dimension=2, num_steps=150)
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


# --- plain bursts mixed with speculative rounds (a scripted policy makes the mix deterministic) ---


class ScriptedState:
    """Replays a fixed cycle of (g, burst) actions; ignores the measurements."""

    def __init__(self, script):
        self.script, self.calls = list(script), 0

    def choose(self, n, frozen, remaining):
        action = self.script[self.calls % len(self.script)]
        self.calls += 1
        return action

    def update(self, *args, timed=True, frozen_call_time=0.0):
        pass

    def update_plain(self, *args, timed=True):
        pass


@attrs.frozen
class Scripted(gs.AdaptiveDraftLength):
    """An AdaptiveDraftLength whose runs replay ``script``."""

    script: tuple = ()

    def start(self, num_chains):
        return ScriptedState(self.script)


def scripted(script):
    return Scripted(max_draft_length=4, script=tuple(script))


@pytest.mark.parametrize("chain", ["ou", "ar2"])
@pytest.mark.parametrize("drafter", ["kernel", "free", "frozen"])
def test_plain_bursts_mixed_with_rounds_are_exact(chain, drafter):
    """Plain bursts start from ragged step indices (after rounds) and feed the next round's
    drafter (the free drafter's cache, the AR(2) memory): the path law stays the target's."""
    build = {"ou": lambda p: chains.OrnsteinUhlenbeckKernel(num_steps=16, perturbation=p),
             "ar2": lambda p: chains.AR2Kernel(num_steps=16, perturbation=p)}[chain]
    target = build(0.0)
    chosen = {"kernel": gs.KernelDrafter(build(0.3)), "free": gs.FreeDrafter(),
              "frozen": gs.FrozenDrafter()}[drafter]
    policy = scripted([(3, 0), (0, 2), (1, 0), (0, 1), (4, 0), (0, 3)])
    x0 = torch.zeros(3000, *target.event_shape, dtype=torch.float64)
    result = gs.SpeculativeSampler(target, chosen, policy).sample(
        x0, generator=torch.Generator().manual_seed(5), return_trajectory=True)
    stats = result.stats
    assert 0 < stats.draft_evaluations < 3000 * 16  # both plain steps and drafts ran
    assert stats.steps == 3000 * 16
    verdict = gt.path_law_test(result.trajectory[1:].transpose(0, 1), gt.path_law(target, x0[0]))
    assert not verdict.rejects(ALPHA), verdict


@pytest.mark.parametrize("drafter", ["kernel", "free"])
def test_plain_bursts_reproduce_sample_chain(drafter):
    """Only plain bursts: the same draws as ``sample_chain``, so the same samples, bit for bit."""
    target = chains.AR2Kernel(num_steps=12)
    chosen = gs.KernelDrafter(chains.AR2Kernel(num_steps=12, perturbation=0.3)) \
        if drafter == "kernel" else gs.FreeDrafter()
    x0 = torch.randn(5, *target.event_shape, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)
    result = gs.SpeculativeSampler(target, chosen, scripted([(0, 5)])).sample(
        x0, generator=torch.Generator().manual_seed(2), return_trajectory=True)
    plain = gs.sample_chain(target, x0, generator=torch.Generator().manual_seed(2),
                            return_trajectory=True)
    torch.testing.assert_close(result.trajectory, plain.trajectory, rtol=0, atol=0)
    assert result.stats.rounds == 12 and result.stats.draft_evaluations == 0
    assert result.stats.target_evaluations == 5 * 12 and result.stats.steps == 5 * 12
