"""OpenMM-backed checks of the MD adapter: force parity, refusals, units, and agreement with
OpenMM's own integrators.

Needs ``openmm`` (``pip install gaussspec[md]``); skipped without it.

Statistical tests: the law of the positions after ``K`` steps from one fixed start (positions and
velocities) under the adapter's plain chain must equal that under OpenMM's
``LangevinMiddleIntegrator`` / ``BrownianIntegrator`` (the same Markov chain, different random
numbers). Two-sample test: KS on random projections plus energy distance, Holm-corrected
(``gaussspec.testing.two_sample_test``). False-alarm budget: ``ALPHA = 1e-3`` per test, two
default tests. Planted mutants caught by the same tests: BAOAB with twice the friction (an O step
applied with ``exp(-2 gamma dt)``, a classic splitting bug) and Brownian dynamics with the mass
forgotten in the mobility ``dt / (gamma m)``. (Halving the temperature, a pure change of spread, is
not caught at this sample size: the test is weaker against scale changes than against shifts.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")
unit = pytest.importorskip("openmm.unit")

import gaussspec as gs  # noqa: E402
from gaussspec.adapters.md import (  # noqa: E402
    BAOABKernel,
    BrownianKernel,
    NonFiniteForceError,
    OpenMMForceField,
    TorchForceField,
    alanine_dipeptide,
    check_system,
    maxwell_boltzmann_velocities,
)
from gaussspec.testing import two_sample_test  # noqa: E402

torch.set_num_threads(1)
ALPHA = 1e-3


@pytest.fixture(scope="module")
def vacuum():
    return alanine_dipeptide("vacuum")


@pytest.fixture(scope="module")
def configurations(vacuum):
    g = torch.Generator().manual_seed(0)
    return vacuum.positions + 0.01 * torch.randn((8, 22, 3), generator=g, dtype=torch.float64)


# --- force parity ------------------------------------------------------------------------------


def test_torch_forcefield_matches_openmm_reference(vacuum, configurations):
    reference = OpenMMForceField(vacuum.system, platform="Reference")
    energy_ref, forces_ref = reference.energy_and_forces(configurations)
    energy, forces = TorchForceField(vacuum.system).energy_and_forces(configurations)
    force_scale = forces_ref.norm(dim=-1).amax(dim=-1, keepdim=True)[..., None]
    assert ((forces - forces_ref).abs() / force_scale).max() < 1e-5
    assert ((energy - energy_ref).abs() / energy_ref.abs().clamp(min=1.0)).max() < 1e-5
    # each term on its own, through OpenMM force groups
    system = vacuum.system.__copy__()
    kinds = {"HarmonicBondForce": "bonds", "HarmonicAngleForce": "angles",
             "PeriodicTorsionForce": "torsions", "NonbondedForce": "nonbonded"}
    for group, force in enumerate(system.getForces()):
        force.setForceGroup(group)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for group, force in enumerate(system.getForces()):
        term = TorchForceField(system, terms=(kinds[type(force).__name__],))
        _, f_term = term.energy_and_forces(configurations)
        for n, xyz in enumerate(configurations.numpy()):
            context.setPositions(xyz)
            expected = context.getState(getForces=True, groups={group}).getForces(asNumpy=True)._value
            scale = np.abs(expected).max()
            assert np.abs(f_term[n].numpy() - expected).max() / scale < 1e-5, type(force).__name__


def test_context_pool_and_cpu_platform_agree(vacuum, configurations):
    one = OpenMMForceField(vacuum.system, platform="Reference")
    pool = OpenMMForceField(vacuum.system, platform="Reference", num_contexts=3)
    torch.testing.assert_close(pool(configurations), one(configurations), rtol=0, atol=0)
    assert pool.calls == 1 and pool.configurations == 8
    pool.close()
    cpu = OpenMMForceField(vacuum.system, platform="CPU", threads=1)
    f_ref = one(configurations)
    assert ((cpu(configurations) - f_ref).abs().max() / f_ref.abs().max()) < 1e-5


def test_a_configuration_holding_nan_comes_back_nan_and_the_others_as_evaluated(vacuum,
                                                                               configurations):
    """OpenMM cannot place atoms at NaN: such a row (a drafted state after a draft's force blew
    up) is not passed to it and comes back NaN, so the sampler, not OpenMM, reports it."""
    bad = configurations.clone()
    bad[[2, 5], 7, 1] = float("nan")
    for num_contexts in (1, 3):
        field = OpenMMForceField(vacuum.system, platform="Reference", num_contexts=num_contexts)
        energy, forces = field.energy_and_forces(bad)
        keep = [0, 1, 3, 4, 6, 7]
        assert torch.isnan(energy[[2, 5]]).all() and torch.isnan(forces[[2, 5]]).all()
        energy_ok, forces_ok = field.energy_and_forces(configurations[keep])
        torch.testing.assert_close(forces[keep], forces_ok, rtol=0, atol=0)
        torch.testing.assert_close(energy[keep], energy_ok, rtol=0, atol=0)
        field.close()
    kernel = BrownianKernel(OpenMMForceField(vacuum.system), vacuum.masses, 300.0, 1.0, 0.001, 5)
    with pytest.raises(NonFiniteForceError, match=r"chain\(s\) \[2, 5\]"):
        kernel.forces(bad, torch.zeros(8, dtype=torch.int64))


# --- refusals and units --------------------------------------------------------------------------


def test_constraints_virtual_sites_and_barostats_are_refused(vacuum):
    pdb = app.PDBFile(str(gs.adapters.md.ALANINE_DIPEPTIDE_PDB))
    forcefield = app.ForceField("amber14-all.xml")
    constrained = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    with pytest.raises(ValueError, match="constraints"):
        OpenMMForceField(constrained)
    with pytest.raises(ValueError, match="constraints"):
        TorchForceField(constrained)
    with_barostat = vacuum.system.__copy__()
    with_barostat.addForce(openmm.MonteCarloBarostat(1.0, 300.0))
    with pytest.raises(ValueError, match="MonteCarloBarostat"):
        check_system(with_barostat)
    with_site = openmm.System()
    for _ in range(3):
        with_site.addParticle(1.0)
    with_site.setVirtualSite(2, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    with pytest.raises(ValueError, match="virtual sites"):
        check_system(with_site)


def test_torch_forcefield_refuses_implicit_solvent_by_name():
    with pytest.raises(ValueError, match="CustomGBForce"):
        TorchForceField(alanine_dipeptide("obc2").system)


def test_openmm_quantities_are_converted_and_wrong_dimensions_refused(vacuum):
    kernel = BAOABKernel(lambda x: x, vacuum.masses, 300 * unit.kelvin, 1 / unit.picosecond,
                         2 * unit.femtoseconds, 5)
    assert kernel.timestep == pytest.approx(0.002) and kernel.friction == pytest.approx(1.0)
    with pytest.raises(ValueError, match="timestep has unit .* not a timestep"):
        BAOABKernel(lambda x: x, vacuum.masses, 300.0, 1.0, 2 * unit.nanometer, 5)
    with pytest.raises(ValueError, match="temperature has unit"):
        BAOABKernel(lambda x: x, vacuum.masses, 300 * unit.kilojoule_per_mole, 1.0, 0.002, 5)


# --- agreement with OpenMM's integrators ----------------------------------------------------------


def _openmm_run(system, integrator, positions, velocities, steps, seeds):
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    out = []
    for seed in seeds:
        integrator.setRandomNumberSeed(int(seed))
        context.reinitialize()
        context.setPositions(positions.numpy())
        context.setVelocities(velocities.numpy())
        integrator.step(steps)
        state = context.getState(getPositions=True, getVelocities=True)
        out.append((state.getPositions(asNumpy=True)._value, state.getVelocities(asNumpy=True)._value))
    return (torch.tensor(np.array([o[0] for o in out])), torch.tensor(np.array([o[1] for o in out])))


def test_zero_temperature_steps_equal_openmm_exactly(vacuum):
    """With T = 0 both integrators are deterministic: positions and velocities must coincide."""
    forces = TorchForceField(vacuum.system)
    v0 = maxwell_boltzmann_velocities(vacuum.masses, 300.0, 1, torch.Generator().manual_seed(0))
    x0 = vacuum.positions[None]
    steps = 20
    x_omm, v_omm = _openmm_run(vacuum.system, openmm.LangevinMiddleIntegrator(0.0, 1.0, 0.001),
                               vacuum.positions, v0[0], steps, [1])
    kernel = BAOABKernel(forces, vacuum.masses, 0.0, 1.0, 0.001, steps, initial_velocities=v0)
    result = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.samples, x_omm, rtol=0, atol=1e-10)
    torch.testing.assert_close(result.memory, v_omm, rtol=0, atol=1e-6)
    x_omm, _ = _openmm_run(vacuum.system, openmm.BrownianIntegrator(0.0, 500.0, 0.001),
                           vacuum.positions, v0[0], steps, [1])
    kernel = BrownianKernel(forces, vacuum.masses, 0.0, 500.0, 0.001, steps)
    result = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.samples, x_omm, rtol=0, atol=1e-10)


@pytest.mark.parametrize("integrator", ["baoab", "brownian"])
def test_plain_chain_has_the_law_of_openmm_integrator(vacuum, integrator):
    chains, steps = 300, 50
    forces = TorchForceField(vacuum.system)
    v0 = maxwell_boltzmann_velocities(vacuum.masses, 300.0, 1, torch.Generator().manual_seed(0))
    x0 = vacuum.positions.expand(chains, -1, -1).clone()
    if integrator == "baoab":
        dt = 0.002
        omm = openmm.LangevinMiddleIntegrator(300.0, 1.0, dt)
        kernel = BAOABKernel(forces, vacuum.masses, 300.0, 1.0, dt, steps, initial_velocities=v0)
        # mutant: the O step applied with exp(-2 gamma dt)
        mutant = BAOABKernel(forces, vacuum.masses, 300.0, 2.0, dt, steps, initial_velocities=v0)
    else:
        dt = 0.001
        omm = openmm.BrownianIntegrator(300.0, 500.0, dt)
        kernel = BrownianKernel(forces, vacuum.masses, 300.0, 500.0, dt, steps)
        # mutant: the mass forgotten in the mobility dt / (gamma m)
        mutant = BrownianKernel(forces, torch.ones(22, dtype=torch.float64), 300.0, 500.0, dt, steps)

    reference, _ = _openmm_run(vacuum.system, omm, vacuum.positions, v0[0], steps, range(1, chains + 1))
    ours = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(1)).samples
    assert two_sample_test(ours, reference).p_value > ALPHA
    broken = gs.sample_chain(mutant, x0, generator=torch.Generator().manual_seed(1)).samples
    assert two_sample_test(broken, reference).p_value < ALPHA


# --- slow: equilibrium agreement with OpenMM ------------------------------------------------------


def _circular_features(positions, topology):
    from gaussspec.adapters.md import dihedrals, phi_psi_indices

    phi_idx, psi_idx = phi_psi_indices(topology)
    phi, psi = (torch.deg2rad(dihedrals(positions, idx)) for idx in (phi_idx, psi_idx))
    return {"sin phi": phi.sin(), "cos phi": phi.cos(), "sin psi": psi.sin(), "cos psi": psi.cos()}


@pytest.mark.slow
def test_equilibrium_energy_and_dihedrals_agree_with_langevin_middle(vacuum):
    """128 independent chains, 5 ps of BAOAB at 2 fs from thermal velocities: the potential energy
    and phi/psi (as sines and cosines) at the end agree with OpenMM's LangevinMiddleIntegrator,
    for the plain chain and for the speculative one (mts-free, gamma 4). Per-feature KS tests,
    Holm-corrected over the 5 features; false-alarm budget ALPHA per comparison (two comparisons).
    Planted mutant caught by the same test: the plain chain at 375 K (345 K gave p = 0.002: too close)."""
    import scipy.stats

    from gaussspec.testing import holm

    chains, steps = 128, 2500
    forces = TorchForceField(vacuum.system)
    bonded = TorchForceField(vacuum.system, terms=("bonds", "angles", "torsions"))
    v0 = maxwell_boltzmann_velocities(vacuum.masses, 300.0, chains, torch.Generator().manual_seed(3))
    context = openmm.Context(vacuum.system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002),
                             openmm.Platform.getPlatformByName("Reference"))
    integrator = context.getIntegrator()
    reference = []
    for b in range(chains):
        integrator.setRandomNumberSeed(b + 1)
        context.reinitialize()
        context.setPositions(vacuum.positions.numpy())
        context.setVelocities(v0[b].numpy())
        integrator.step(steps)
        reference.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    reference = torch.tensor(np.array(reference))
    x0 = vacuum.positions.expand(chains, -1, -1).clone()
    kernel = BAOABKernel(forces, vacuum.masses, 300.0, 1.0, 0.002, steps, fast_force_fn=bonded, initial_velocities=v0)
    plain = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(4)).samples
    spec = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=4).sample(
        x0, generator=torch.Generator().manual_seed(5)).samples

    def features(positions):
        out = _circular_features(positions, vacuum.topology)
        out["energy"] = forces.energy(positions)
        return out

    # planted mutant: the plain chain at 375 K instead of 300 K (a thermostat 25% too hot)
    hot = BAOABKernel(forces, vacuum.masses, 375.0, 1.0, 0.002, steps, initial_velocities=v0)
    mutant = gs.sample_chain(hot, x0, generator=torch.Generator().manual_seed(6)).samples

    ref = features(reference)

    def family_p(samples):
        ours = features(samples)
        return holm(scipy.stats.ks_2samp(ours[k].numpy(), ref[k].numpy()).pvalue for k in ref)

    assert family_p(plain) > ALPHA
    assert family_p(spec) > ALPHA
    assert family_p(mutant) < ALPHA
