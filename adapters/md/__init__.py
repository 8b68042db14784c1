"""Molecular dynamics adapter: Brownian, ABOBA and BAOAB Langevin dynamics as Gaussian kernels.

Everything is in OpenMM units (nm, ps, kJ/mol, amu, K). The kernels need only torch; the force
providers need OpenMM (``OpenMMForceField``, ``TorchForceField`` built from an OpenMM System, the
alanine dipeptide test system) or ASE (``ASEForceField``): install them with
``pip install gaussspec[md]``. See ``docs/md.md``.
"""

from gaussspec.adapters.md.kernels import (
    ABOBAKernel,
    BAOABKernel,
    BrownianKernel,
    NonFiniteForceError,
    aboba_state,
    maxwell_boltzmann_velocities,
)
from gaussspec.adapters.md.output import TrajectoryWriter, dihedrals, ramachandran_plot
from gaussspec.adapters.md.openmm_forces import OpenMMForceField, check_system, masses_from_system
from gaussspec.adapters.md.simulate import SimulationResult, TrajectoryExplodedError, simulate
from gaussspec.adapters.md.systems import (
    ALANINE_DIPEPTIDE_PDB,
    MolecularSystem,
    alanine_dipeptide,
    phi_psi_indices,
)
from gaussspec.adapters.md.ase_forces import ASEForceField, copper_cluster, copper_lennard_jones
from gaussspec.adapters.md.torch_forcefield import TorchForceField
from gaussspec.adapters.md.units import BOLTZMANN_KJ_PER_MOL_K

__all__ = [
    "ABOBAKernel",
    "ASEForceField",
    "ALANINE_DIPEPTIDE_PDB",
    "BAOABKernel",
    "BOLTZMANN_KJ_PER_MOL_K",
    "BrownianKernel",
    "MolecularSystem",
    "NonFiniteForceError",
    "OpenMMForceField",
    "SimulationResult",
    "TorchForceField",
    "TrajectoryExplodedError",
    "TrajectoryWriter",
    "aboba_state",
    "alanine_dipeptide",
    "check_system",
    "copper_cluster",
    "copper_lennard_jones",
    "dihedrals",
    "masses_from_system",
    "maxwell_boltzmann_velocities",
    "phi_psi_indices",
    "ramachandran_plot",
    "simulate",
]
