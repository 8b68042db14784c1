"""Speculative ULA has exactly the law of plain ULA at the same step size.

For several (posterior, drafter) pairs: 300 chains start from the same 300 reference draws; plain
ULA and speculative ULA (different seeds, so independent) run 16 steps; the joint states at steps
4, 8 and 16 of the two samples are compared with ``gaussspec.testing.two_sample_test`` (KS on
random projections and coordinates plus an energy-distance permutation test, Holm-corrected).
False-alarm budget: 1e-3 per (posterior, drafter) test, so at most ~6e-3 for the default family.
Planted mutants (the engine accepting every draft; the residual replaced by a fresh draft draw)
must be rejected by the same test at the same level where the draft differs enough from the
target for the bug to show (data-subsample and frozen drafts; a near-exact Laplace or float32 draft
makes "always accept" nearly harmless, so it is not tested there).
"""

from __future__ import annotations

import pytest
import torch

import gaussspec as gs
from gaussspec.adapters import langevin
from gaussspec.testing import planted_mutant, two_sample_test

torch.set_num_threads(1)

ALPHA = 1e-3
CHAINS, STEPS, GAMMA = 300, 16, 6


def _drafter(kind: str, target: langevin.ULAKernel):
    if kind == "free":
        return gs.FreeDrafter()
    if kind == "frozen":
        return gs.FrozenDrafter()
    if kind == "laplace":
        return gs.KernelDrafter(langevin.laplace_draft(target))
    if kind == "float32":
        return gs.KernelDrafter(langevin.low_precision_draft(target))
    if kind == "subsample":
        return gs.KernelDrafter(langevin.subsample_draft(target, 40, torch.Generator().manual_seed(0)))
    raise ValueError(kind)


def _features(trajectory: torch.Tensor) -> torch.Tensor:
    return torch.cat([trajectory[4], trajectory[8], trajectory[16]], dim=1)


def _setup(name: str, kind: str, step_size: float):
    post = langevin.posterior(name)
    target = langevin.ULAKernel(post, step_size, STEPS, preconditioner=post.reference_covariance())
    x0 = post.initial_state(CHAINS, torch.Generator().manual_seed(1))
    plain = gs.sample_chain(target, x0, generator=torch.Generator().manual_seed(2), return_trajectory=True)
    sampler = gs.SpeculativeSampler(target, _drafter(kind, target), draft_length=GAMMA)
    return sampler, x0, _features(plain.trajectory)


CASES = [
    ("eight_schools_noncentered", "free", 0.2),
    ("sblrc", "laplace", 0.2),
    ("garch", "frozen", 0.2),
    ("kidiq", "subsample", 0.2),
    ("arK", "subsample", 0.2),
    ("gp_pois_regr", "float32", 0.01),  # the Poisson likelihood is stiff: ULA needs a small step
]


@pytest.mark.parametrize("name, kind, step_size", CASES)
def test_speculative_ula_matches_plain_ula(name, kind, step_size):
    sampler, x0, plain = _setup(name, kind, step_size)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    assert result.stats.block_efficiency > 1.2  # speculation actually happened
    test = two_sample_test(plain, _features(result.trajectory), seed=0)
    assert not test.rejects(ALPHA), f"{name}/{kind}: p = {test.p_value:.2e} ({test.components})"


@pytest.mark.parametrize(
    "name, kind, mutant",
    [
        ("kidiq", "subsample", "always_accept"),
        ("kidiq", "subsample", "draft_instead_of_residual"),
        ("garch", "frozen", "always_accept"),
    ],
)
def test_the_same_test_rejects_planted_mutants(name, kind, mutant):
    sampler, x0, plain = _setup(name, kind, 0.2)
    with planted_mutant(mutant):
        broken = sampler.sample(x0, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    test = two_sample_test(plain, _features(broken.trajectory), seed=0)
    assert test.rejects(ALPHA), f"{name}/{kind} with {mutant}: p = {test.p_value:.2e}"


@pytest.mark.slow
def test_speculative_ula_matches_plain_ula_on_diamonds():
    sampler, x0, plain = _setup("diamonds", "free", 0.2)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    test = two_sample_test(plain, _features(result.trajectory), seed=0)
    assert not test.rejects(ALPHA), f"diamonds/free: p = {test.p_value:.2e}"
