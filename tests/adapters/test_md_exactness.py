"""Speculative MD has the law of the plain chain: alanine dipeptide, three integrators.

For each integrator (BAOAB with memory, ABOBA with its rectangular noise factor, Brownian), 400
chains start from one fixed state (positions and Maxwell-Boltzmann velocities shared by all
chains) and run K = 16 steps, once with the plain chain and once speculatively (draft length 4,
block verification, gamma coupling); the final states are compared with
``gaussspec.testing.two_sample_test`` (KS on random projections plus energy distance, Holm).
The drafters: the multiple time-step split (fresh bonded forces, stale nonbonded forces) under
the free drafter for BAOAB and ABOBA, and an independent bonded-only draft kernel for Brownian
dynamics; acceptance is neither 0 nor 1 in all three.

False-alarm budget: ``ALPHA = 1e-3`` per test, three tests. Planted mutant caught by the same
test: the engine that accepts every draft (``planted_mutant("always_accept")``), i.e. a chain
driven by the stale draft forces. Needs OpenMM to read the force field (skipped without it).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("openmm")

import gaussspec as gs  # noqa: E402
from gaussspec.adapters.md import (  # noqa: E402
    ABOBAKernel,
    BAOABKernel,
    BrownianKernel,
    TorchForceField,
    aboba_state,
    alanine_dipeptide,
    maxwell_boltzmann_velocities,
)
from gaussspec.testing import planted_mutant, two_sample_test  # noqa: E402

torch.set_num_threads(1)
ALPHA = 1e-3
CHAINS, STEPS = 400, 16
MIN_BLOCK_EFFICIENCY = 1.3  # above it, some drafts were accepted (every one rejected gives 1.0)


@pytest.fixture(scope="module")
def setup():
    system = alanine_dipeptide("vacuum")
    forces = TorchForceField(system.system)
    bonded = TorchForceField(system.system, terms=("bonds", "angles", "torsions"))
    x0 = system.positions.expand(CHAINS, -1, -1).clone()
    v0 = maxwell_boltzmann_velocities(system.masses, 300.0, 1, torch.Generator().manual_seed(0))
    return system, forces, bonded, x0, v0.expand(CHAINS, -1, -1).clone()


def _case(name, setup):
    system, forces, bonded, x0, v0 = setup
    if name == "baoab":
        kernel = BAOABKernel(forces, system.masses, 300.0, 1.0, 0.002, STEPS, fast_force_fn=bonded,
                             initial_velocities=v0)
        return kernel, gs.FreeDrafter(), x0
    if name == "aboba":
        kernel = ABOBAKernel(forces, system.masses, 300.0, 1.0, 0.002, STEPS, fast_force_fn=bonded)
        return kernel, gs.FreeDrafter(), aboba_state(x0, v0)
    # Brownian steps barely move the nonbonded forces, so the MTS draft is almost always accepted
    # and no mutant is visible; an independent bonded-only draft kernel at 30 K is rejected often
    # enough for the accept/residual machinery to matter.
    kernel = BrownianKernel(forces, system.masses, 30.0, 100.0, 0.0005, STEPS)
    return kernel, gs.KernelDrafter(kernel.with_forces(bonded)), x0


@pytest.mark.parametrize("name", ["baoab", "aboba", "brownian"])
def test_speculative_md_matches_plain_chain(setup, name):
    kernel, drafter, x0 = _case(name, setup)
    plain = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(1)).samples
    sampler = gs.SpeculativeSampler(kernel, drafter, draft_length=4)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(2))
    # Block efficiency lies between 1 (every draft rejected) and the all-accepted value, which for
    # K steps in rounds of at most draft_length + 1 is K / ceil(K / 5) = 4.0 here (the always-accept
    # mutant reaches it); keeping away from both ends means drafts were both accepted and rejected.
    all_accepted = STEPS / math.ceil(STEPS / 5)
    assert MIN_BLOCK_EFFICIENCY < result.stats.block_efficiency < all_accepted - 0.1
    # fewer sequential calls per chain than plain (the batch's round count is its slowest chain)
    assert result.stats.chain_rounds / result.stats.num_chains < 0.9 * STEPS
    assert two_sample_test(result.samples, plain).p_value > ALPHA
    with planted_mutant("always_accept"):
        broken = sampler.sample(x0, generator=torch.Generator().manual_seed(3))
    # the upper bound above is one this mutant breaks: it reaches the all-accepted value
    assert broken.stats.block_efficiency > all_accepted - 0.1
    assert two_sample_test(broken.samples, plain).p_value < ALPHA


def test_block_efficiency_lower_bound_fails_when_drafts_are_rejected(setup):
    """The lower bound of the test above can fail: a Brownian draft kernel that ignores the
    forces (at 30 K the force drift is most of the step) has nearly every draft rejected."""
    system, forces, bonded, x0, v0 = setup
    kernel = BrownianKernel(forces, system.masses, 30.0, 100.0, 0.0005, STEPS)
    forceless = gs.KernelDrafter(kernel.with_forces(lambda x: torch.zeros_like(x)))
    result = gs.SpeculativeSampler(kernel, forceless, draft_length=4).sample(
        x0, generator=torch.Generator().manual_seed(2))
    assert result.stats.block_efficiency < MIN_BLOCK_EFFICIENCY  # 1.07 with this seed
