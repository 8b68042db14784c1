"""Exactness of the speculative sampler: closed-form path laws, two-sample tests, mutants.

False-alarm budget: every test below rejects at ALPHA = 1e-3 on a Holm-corrected p-value, with
fixed seeds (so CI is deterministic). Over the ~60 exactness cases the family-wise false-alarm
probability is below 6% for a fresh seed; every planted mutant must be rejected at the same ALPHA.
"""

import math

import pytest
import torch

import gaussspec as gs
from gaussspec import testing as gt
from gaussspec.testing import chains

ALPHA = 1e-3
NUM_CHAINS = 3000

LINEAR_CHAINS = {
    "ou": lambda p: chains.OrnsteinUhlenbeckKernel(perturbation=p),
    "ou_dense": lambda p: chains.OrnsteinUhlenbeckKernel(covariance_kind="dense", perturbation=p),
    "ddpm_gaussian_zero_last_variance": lambda p: chains.GaussianDataDDPMKernel(perturbation=p),
    "ddpm_gaussian_frozen_sample": lambda p: chains.GaussianDataDDPMKernel(
        perturbation=p, frozen_quantity="sample"),
    "ar2_memory": lambda p: chains.AR2Kernel(perturbation=p),
    "aboba_factor": lambda p: chains.HarmonicABOBAKernel(perturbation=p),
}
MODES = [("block", "gamma"), ("token", "gamma"), ("token", "reflection")]
DRAFTERS = ["kernel", "frozen", "free"]


def _drafter(name, build):
    if name == "kernel":
        return gs.KernelDrafter(build(0.4))
    return {"frozen": gs.FrozenDrafter(), "free": gs.FreeDrafter()}[name]


def _paths(result):
    return result.trajectory[1:].transpose(0, 1)  # (N, K, *event)


@pytest.mark.parametrize("chain", sorted(LINEAR_CHAINS))
@pytest.mark.parametrize("drafter", DRAFTERS)
@pytest.mark.parametrize("verification,coupling", MODES)
def test_path_law_matches_closed_form(chain, drafter, verification, coupling):
    build = LINEAR_CHAINS[chain]
    target = build(0.0)
    x0 = torch.zeros(NUM_CHAINS, *target.event_shape, dtype=torch.float64)
    sampler = gs.SpeculativeSampler(target, _drafter(drafter, build), 3, verification, coupling)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(11), return_trajectory=True)
    verdict = gt.path_law_test(_paths(result), gt.path_law(target, x0[0]))
    assert not verdict.rejects(ALPHA), verdict


def test_plain_chain_matches_closed_form():
    target = chains.GaussianDataDDPMKernel()
    x0 = torch.zeros(NUM_CHAINS, *target.event_shape, dtype=torch.float64)
    result = gs.sample_chain(target, x0, generator=torch.Generator().manual_seed(3),
                             return_trajectory=True)
    assert not gt.path_law_test(_paths(result), gt.path_law(target, x0[0])).rejects(ALPHA)


@pytest.mark.parametrize("drafter", DRAFTERS)
@pytest.mark.parametrize("verification,coupling", MODES)
def test_nonlinear_double_well_two_sample(drafter, verification, coupling):
    target = chains.DoubleWellLangevinKernel(num_steps=16)
    built = gs.KernelDrafter(chains.DoubleWellLangevinKernel(num_steps=16, perturbation=0.3))
    chosen = built if drafter == "kernel" else _drafter(drafter, None)
    x0 = target.initial_state(1500)
    report = gt.check_exactness(target, chosen, x0, torch.Generator().manual_seed(5), 4,
                                verification, coupling, num_checked_steps=2)
    assert not report.rejects(ALPHA), report.to_dict()["tests"]


def test_acceptance_rate_matches_closed_form():
    target = chains.OrnsteinUhlenbeckKernel(dimension=3, num_steps=2)
    draft = chains.OrnsteinUhlenbeckKernel(dimension=3, num_steps=2, perturbation=0.8)
    x0 = torch.full((20000, 3), 1.5, dtype=torch.float64)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(draft), 1, "token")
    stats = sampler.sample(x0, generator=torch.Generator().manual_seed(2)).stats
    delta = gt.first_step_delta(target, draft, x0[0])
    verdict = gt.acceptance_rate_test(stats.accepted_by_position[0], stats.drafted_by_position[0],
                                      delta)
    assert 0.2 < verdict.components["expected"] < 0.9  # a non-trivial acceptance rate
    assert not verdict.rejects(ALPHA)
    wrong = gt.acceptance_rate_test(stats.accepted_by_position[0], stats.drafted_by_position[0],
                                    1.2 * delta)
    assert wrong.rejects(ALPHA)  # the same test sees a 20% error in delta


# --- planted mutants: the same tests must reject each -------------------------------------------

MUTANT_CASES = {
    # (chain builder, x0 value, num_chains, draft_length, verification)
    "always_accept": (lambda p: chains.OrnsteinUhlenbeckKernel(perturbation=p), 0.0, 3000, 3, "block"),
    "draft_instead_of_residual": (lambda p: chains.AR2Kernel(perturbation=p), 0.0, 3000, 3, "block"),
    "off_by_one_step": (lambda p: chains.GaussianDataDDPMKernel(perturbation=p), 0.0, 3000, 3, "block"),
    "covariance_5_percent": (lambda p: chains.HarmonicABOBAKernel(perturbation=p), 0.0, 3000, 3, "block"),
    "reflection_in_block": (
        lambda p: chains.OrnsteinUhlenbeckKernel(dimension=1, num_steps=4, step_size=0.5,
                                                 perturbation=5 * p),
        0.0, 20000, 3, "block"),
}


@pytest.mark.parametrize("mutant", gt.MUTANTS)
def test_planted_mutant_is_rejected(mutant):
    build, start, num_chains, gamma, verification = MUTANT_CASES[mutant]
    target = build(0.0)
    x0 = torch.full((num_chains, *target.event_shape), start, dtype=torch.float64)
    law = gt.path_law(target, x0[0])
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(build(0.4)), gamma, verification)
    with gt.planted_mutant(mutant):
        broken = sampler.sample(x0, generator=torch.Generator().manual_seed(1),
                                return_trajectory=True)
    assert gt.path_law_test(_paths(broken), law).rejects(ALPHA)
    # ...while the same configuration without the mutant passes
    honest = sampler.sample(x0, generator=torch.Generator().manual_seed(1), return_trajectory=True)
    assert not gt.path_law_test(_paths(honest), law).rejects(ALPHA)


def test_two_sample_test_sees_a_mutant_on_a_nonlinear_chain():
    target = chains.DoubleWellLangevinKernel(num_steps=16)
    draft = gs.KernelDrafter(chains.DoubleWellLangevinKernel(num_steps=16, perturbation=-0.7))
    x0 = target.initial_state(1500)
    with gt.planted_mutant("always_accept"):
        report = gt.check_exactness(target, draft, x0, torch.Generator().manual_seed(5), 4)
    assert report.rejects(ALPHA)


def test_unknown_mutant_is_refused():
    with pytest.raises(ValueError, match="valid"):
        with gt.planted_mutant("nope"):
            pass


def test_falsealarm_budget_is_stated():
    assert ALPHA * 60 <= 0.06 and math.isfinite(ALPHA)


@pytest.mark.parametrize("chain", ["ou", "ddpm_gaussian_zero_last_variance"])
@pytest.mark.parametrize("drafter", ["kernel", "free"])
@pytest.mark.parametrize("verification,coupling", MODES)
def test_path_law_with_float32_states(chain, drafter, verification, coupling):
    """float32 states take the element-wise float32 verification path (float64 reductions)."""
    build = LINEAR_CHAINS[chain]
    target = build(0.0)
    x0 = torch.zeros(NUM_CHAINS, *target.event_shape, dtype=torch.float32)
    sampler = gs.SpeculativeSampler(target, _drafter(drafter, build), 3, verification, coupling)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(17), return_trajectory=True)
    assert result.samples.dtype == torch.float32
    verdict = gt.path_law_test(_paths(result), gt.path_law(target, x0[0].double()), null_atol=1e-5)
    assert not verdict.rejects(ALPHA), verdict


class _FencedOU(chains.OrnsteinUhlenbeckKernel):
    """The OU chain with its mean undefined (NaN) beyond x_0 = 5.5, 6.5 standard deviations
    from the stationary mean: the chain never gets there, a draft pushed along x_0 does."""

    undefined = 0

    def evaluate(self, x, t):
        outside = x[:, 0] > 5.5
        self.undefined += int(outside.sum())
        return torch.where(outside[:, None], float("nan"), super().evaluate(x, t))


class _PushedOU(chains.OrnsteinUhlenbeckKernel):
    """A draft whose gradient is pushed by ``push`` along x_0 (0.3 push a step)."""

    push = 8.0

    def evaluate(self, x, t):
        return super().evaluate(x, t) + torch.tensor([self.push, 0.0], dtype=x.dtype)


def _holed(base):
    """``base`` as a draft (its force 40% off) whose mean is NaN wherever the state's first
    coordinate is above 0.3: inside the target's mass, so most rounds draft into the hole."""

    class Holed(base):
        undefined = 0

        def evaluate(self, x, t):
            force = super().evaluate(x, t)
            outside = x.reshape(x.shape[0], -1)[:, 0] > 0.3
            Holed.undefined += int(outside.sum())
            return torch.where(outside.view(-1, *[1] * (force.ndim - 1)), float("nan"), force)

    return Holed


@pytest.mark.parametrize("chain", ["ou", "aboba_factor"])
@pytest.mark.parametrize("verification,coupling", MODES)
def test_a_draft_whose_mean_is_undefined_is_drafted_again_and_keeps_the_law(
        chain, verification, coupling):
    """A draft mean that is not finite leaves no proposal there: the round is drafted again
    from the same noises with ``m_p := x`` at such states (a proper kernel, the draft wherever
    that is defined) and the target called again. On the ABOBA chain that fallback is mutually
    singular with the target (its noise moves velocities only), which rejects there."""
    build = LINEAR_CHAINS[chain]
    target = build(0.0)
    holed = _holed(type(target))
    draft = holed(perturbation=0.4)
    x0 = torch.zeros(NUM_CHAINS, *target.event_shape, dtype=torch.float64)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(draft), 4, verification, coupling)
    with pytest.warns(RuntimeWarning, match="draft's mean was not finite"):
        result = sampler.sample(x0, generator=torch.Generator().manual_seed(23),
                                return_trajectory=True)
    assert holed.undefined > NUM_CHAINS
    assert result.stats.sequential_target_calls > result.stats.rounds  # drafted again
    verdict = gt.path_law_test(_paths(result), gt.path_law(target, x0[0]))
    assert not verdict.rejects(ALPHA), verdict


def test_drafting_again_from_other_noises_is_rejected(monkeypatch):
    """A planted mutant: the round drafted again from fresh noises, while verification still
    reads the first ones (the ratios then belong to other states): the same test rejects it."""
    draft_again = gs.sampler._Run._draft_again

    def from_other_noises(self, *args):
        *rest, noises = args
        return draft_again(self, *rest, torch.randn_like(noises))

    target = LINEAR_CHAINS["ou"](0.0)
    x0 = torch.zeros(NUM_CHAINS, *target.event_shape, dtype=torch.float64)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(_holed(type(target))(perturbation=0.4)),
                                    4, "block", "gamma")
    monkeypatch.setattr(gs.sampler._Run, "_draft_again", from_other_noises)
    with pytest.warns(RuntimeWarning):
        broken = sampler.sample(x0, generator=torch.Generator().manual_seed(23),
                                return_trajectory=True)
    assert gt.path_law_test(_paths(broken), gt.path_law(target, x0[0])).rejects(ALPHA)


@pytest.mark.parametrize("verification,coupling", MODES)
def test_drafts_that_reach_an_undefined_target_mean_keep_the_law(verification, coupling):
    """Verification evaluates the target at every drafted state; where its mean is undefined
    the round uses the draft's there (exact for a target that steps so from those states, which
    is the true one until a chain reaches one, when the run raises). Most rounds here draft past
    the fence, and the paths keep the closed-form law."""
    target = _FencedOU(dimension=2, num_steps=12)
    x0 = torch.zeros(NUM_CHAINS, 2, dtype=torch.float64)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(_PushedOU(dimension=2, num_steps=12)),
                                    6, verification, coupling)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(5), return_trajectory=True)
    assert target.undefined > NUM_CHAINS  # drafted states past the fence, every round's many
    verdict = gt.path_law_test(_paths(result), gt.path_law(target, x0[0]))
    assert not verdict.rejects(ALPHA), verdict
