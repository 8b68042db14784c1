"""Trajectory output, segment runs, blow-up handling, ASE forces and plots of the MD adapter.

Deterministic checks (no false-alarm budget). Parts needing mdtraj/OpenMM/ASE/matplotlib skip
without them.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.adapters.md import (
    BAOABKernel,
    BrownianKernel,
    TrajectoryExplodedError,
    TrajectoryWriter,
    dihedrals,
    simulate,
)

torch.set_num_threads(1)
MASSES = torch.tensor([12.0, 1.008, 16.0], dtype=torch.float64)


def tether(x):
    return -400.0 * x


def test_md_adapter_imports_without_openmm_ase_or_mdtraj():
    code = (
        "import sys\n"
        "for name in ('openmm', 'ase', 'mdtraj'): sys.modules[name] = None\n"
        "import torch, gaussspec as gs\n"
        "from gaussspec.adapters.md import BAOABKernel\n"
        "k = BAOABKernel(lambda x: -x, torch.ones(2), 300.0, 1.0, 0.002, 3)\n"
        "print(gs.sample_chain(k, torch.zeros(1, 2, 3, dtype=torch.float64)).samples.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 2, 3])" in out.stdout


def test_exploding_trajectory_stops_names_the_step_and_keeps_frames():
    class Recorder:
        def __init__(self):
            self.frames = []

        def write(self, positions, energies=None):
            self.frames.extend(positions)

    def repulsive(x):  # an unstable force: positions grow exponentially
        return 3e4 * x

    kernel = BrownianKernel(repulsive, MASSES, 300.0, 10.0, 0.001, 10)
    x0 = torch.full((1, 3, 3), 0.01, dtype=torch.float64)
    recorder = Recorder()
    with pytest.raises(TrajectoryExplodedError, match=r"exploded at step \d+") as info:
        simulate(kernel, x0, num_segments=20, generator=torch.Generator().manual_seed(0), writer=recorder)
    assert info.value.frames_written == len(recorder.frames) == info.value.step
    assert all(torch.isfinite(f).all() for f in recorder.frames)


def test_nan_force_in_a_segment_names_the_steps():
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        f = tether(x)
        if calls["n"] > 25:
            f = f * float("nan")
        return f

    kernel = BAOABKernel(flaky, MASSES, 300.0, 1.0, 0.002, 10)
    with pytest.raises(TrajectoryExplodedError,
                       match=r"steps 20\.\.30 .*BAOABKernel mean is NaN or inf at step t=5 .*NaN/inf forces") as info:
        simulate(kernel, torch.zeros(1, 3, 3, dtype=torch.float64), 5, torch.Generator().manual_seed(0))
    assert isinstance(info.value.__cause__, gs.NonFiniteMeanError)
    assert info.value.step == 20


def test_segments_carry_velocities_like_one_long_run():
    u0 = torch.randn((2, 3, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0 = torch.zeros(2, 3, 3, dtype=torch.float64)
    long = BAOABKernel(tether, MASSES, 300.0, 1.0, 0.002, 12, initial_velocities=u0)
    whole = gs.sample_chain(long, x0, generator=torch.Generator().manual_seed(4))
    short = long.__class__(tether, MASSES, 300.0, 1.0, 0.002, 4, initial_velocities=u0)
    pieces = simulate(short, x0, 3, torch.Generator().manual_seed(4))
    torch.testing.assert_close(pieces.state, whole.samples, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(pieces.memory, whole.memory, rtol=1e-6, atol=1e-8)
    assert pieces.sequential_target_calls == 12 and pieces.block_efficiency == 1.0


def test_dihedral_sign_follows_iupac():
    # looking from atom 1 to atom 2 (+z), the front bond (+x) turns clockwise by 90 deg onto the back bond (+y)
    x = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    assert float(dihedrals(x[None], [0, 1, 2, 3])) == pytest.approx(90.0)
    assert float(dihedrals(x[None], [3, 2, 1, 0])) == pytest.approx(90.0)
    assert float(dihedrals(x[None] * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64), [0, 1, 2, 3])) == pytest.approx(-90.0)


def test_alanine_dipeptide_starts_in_c7eq_with_mdtraj_signs():
    mdtraj = pytest.importorskip("mdtraj")
    pytest.importorskip("openmm")
    from gaussspec.adapters.md import ALANINE_DIPEPTIDE_PDB, alanine_dipeptide, phi_psi_indices

    system = alanine_dipeptide()
    phi, psi = phi_psi_indices(system.topology)
    traj = mdtraj.load(str(ALANINE_DIPEPTIDE_PDB))
    assert float(dihedrals(system.positions, phi)) == pytest.approx(float(np.degrees(mdtraj.compute_phi(traj)[1]).item()), abs=1e-3)
    assert float(dihedrals(system.positions, psi)) == pytest.approx(float(np.degrees(mdtraj.compute_psi(traj)[1]).item()), abs=1e-3)
    assert -100 < float(dihedrals(system.positions, phi)) < -60  # C7eq basin of L-alanine


def test_dcd_and_xtc_round_trip(tmp_path):
    mdtraj = pytest.importorskip("mdtraj")
    pytest.importorskip("openmm")
    from gaussspec.adapters.md import TorchForceField, alanine_dipeptide, maxwell_boltzmann_velocities

    system = alanine_dipeptide()
    forces = TorchForceField(system.system)
    u0 = maxwell_boltzmann_velocities(system.masses, 300.0, 1, torch.Generator().manual_seed(0))
    kernel = BAOABKernel(forces, system.masses, 300.0, 1.0, 0.001, 10, initial_velocities=u0,
                         fast_force_fn=TorchForceField(system.system, terms=("bonds", "angles", "torsions")))
    for suffix in (".dcd", ".xtc"):
        path = tmp_path / f"ala{suffix}"
        with TrajectoryWriter(path, system.topology, timestep=0.002) as writer:
            result = simulate(kernel, system.positions[None], 2, torch.Generator().manual_seed(0),
                              drafter=gs.FreeDrafter(), draft_length=4, writer=writer, write_every=2,
                              energy_fn=forces.energy)
        assert result.frames_written == 11 and result.energies.shape == (11,)
        traj = mdtraj.load(str(path), top=mdtraj.Topology.from_openmm(system.topology))
        assert traj.n_frames == 11
        np.testing.assert_allclose(traj.xyz[-1], result.state[0].numpy(), atol=2e-3)


def test_ase_forces_units_and_traj_output(tmp_path):
    pytest.importorskip("ase")
    from ase.calculators.emt import EMT
    from ase.io import read

    from gaussspec.adapters.md import ASEForceField, copper_cluster, copper_lennard_jones

    atoms = copper_cluster(2)
    emt = ASEForceField(atoms, EMT())
    moved = atoms.copy()
    moved.positions[0] += 0.05
    moved.calc = EMT()
    positions = torch.tensor(moved.positions * 0.1)[None]
    energy, forces = emt.energy_and_forces(positions)
    np.testing.assert_allclose(forces[0].numpy(), moved.get_forces() * 964.8533212331002, rtol=1e-12)
    assert float(energy) == pytest.approx(moved.get_potential_energy() * 96.48533212331002)
    lj = ASEForceField(atoms, copper_lennard_jones())
    kernel = BAOABKernel(emt, emt.masses, 300.0, 1.0, 0.002, 6, fast_force_fn=lj)
    path = tmp_path / "cu.traj"
    with TrajectoryWriter(path, atoms) as writer:
        result = simulate(kernel, torch.tensor(atoms.positions * 0.1)[None], 1, torch.Generator().manual_seed(0),
                          drafter=gs.FreeDrafter(), draft_length=3, writer=writer, energy_fn=emt.energy)
    frames = read(str(path), index=":")
    assert len(frames) == 7
    np.testing.assert_allclose(frames[-1].positions * 0.1, result.state[0].numpy(), atol=1e-12)
    assert frames[-1].get_potential_energy() == pytest.approx(float(result.energies[-1]) / 96.48533212331002)


def test_ramachandran_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from gaussspec.adapters.md import ramachandran_plot

    rng = np.random.default_rng(0)
    panels = {"plain": (rng.uniform(-180, 180, 500), rng.uniform(-180, 180, 500)),
              "speculative": (rng.uniform(-180, 180, 500), rng.uniform(-180, 180, 500))}
    path = ramachandran_plot(panels, tmp_path / "rama.png", title="test")
    assert path.stat().st_size > 1000
