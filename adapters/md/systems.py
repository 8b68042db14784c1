"""Test systems: alanine dipeptide (vacuum and implicit solvent) and a copper cluster.

Alanine dipeptide (ACE-ALA-NME, 22 atoms) is built from the PDB shipped in ``data/`` (made by
``data/build_alanine_dipeptide.py`` from internal coordinates; nothing downloaded) with OpenMM's
bundled Amber ff14SB (``amber14-all.xml``), no constraints, no cutoff. The implicit-solvent
variant adds OpenMM's bundled OBC2 generalized Born model (``implicit/obc2.xml``). This replaces
openmmtools' ``AlanineDipeptideVacuum``/``AlanineDipeptideImplicit`` without its dependencies
(the force field and geometry differ slightly from openmmtools' prmtop).
"""

from __future__ import annotations

import pathlib

import attrs
import numpy as np
import torch

__all__ = ["MolecularSystem", "alanine_dipeptide", "ALANINE_DIPEPTIDE_PDB", "phi_psi_indices"]

#: Path of the shipped alanine dipeptide PDB (22 atoms, C7eq basin, minimised with ff14SB).
ALANINE_DIPEPTIDE_PDB = pathlib.Path(__file__).with_name("data") / "alanine_dipeptide.pdb"

_SOLVENTS = {"vacuum": (), "obc2": ("implicit/obc2.xml",), "gbn2": ("implicit/gbn2.xml",)}


@attrs.frozen
class MolecularSystem:
    """An OpenMM system with its topology and starting positions.

    Attributes:
        system: The ``openmm.System`` (no constraints, no cutoff).
        topology: The ``openmm.app.Topology``.
        positions: ``(N, 3)`` float64 tensor of starting positions in nm.
        masses: ``(N,)`` float64 tensor of masses in amu.
        name: A short label.
    """

    system: object
    topology: object
    positions: torch.Tensor
    masses: torch.Tensor
    name: str


def alanine_dipeptide(solvent: str = "vacuum") -> MolecularSystem:
    """Alanine dipeptide with Amber ff14SB, no constraints, no cutoff.

    Args:
        solvent: ``"vacuum"``, ``"obc2"`` (OpenMM's ``implicit/obc2.xml``) or ``"gbn2"``.

    Returns:
        A :class:`MolecularSystem`; ``removeCMMotion`` is off (these integrators do not
        remove centre-of-mass motion, so neither does the reference simulation).

    Raises:
        ValueError: An unknown solvent.
        ImportError: OpenMM is not installed (``pip install gaussspec[md]``).
    """
    if solvent not in _SOLVENTS:
        raise ValueError(f"solvent must be one of {sorted(_SOLVENTS)}, got {solvent!r}")
    import openmm.app as app

    from gaussspec.adapters.md.openmm_forces import masses_from_system

    pdb = app.PDBFile(str(ALANINE_DIPEPTIDE_PDB))
    forcefield = app.ForceField("amber14-all.xml", *_SOLVENTS[solvent])
    system = forcefield.createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False, removeCMMotion=False
    )
    positions = torch.tensor(np.asarray(pdb.getPositions(asNumpy=True)._value), dtype=torch.float64)
    return MolecularSystem(
        system=system,
        topology=pdb.topology,
        positions=positions,
        masses=masses_from_system(system),
        name=f"alanine_dipeptide_{solvent}",
    )


def phi_psi_indices(topology) -> tuple[list[int], list[int]]:
    """Atom indices of the backbone dihedrals phi (C-N-CA-C) and psi (N-CA-C-N) of residue 2."""
    atoms = {(a.residue.index, a.name): a.index for a in topology.atoms()}
    phi = [atoms[(0, "C")], atoms[(1, "N")], atoms[(1, "CA")], atoms[(1, "C")]]
    psi = [atoms[(1, "N")], atoms[(1, "CA")], atoms[(1, "C")], atoms[(2, "N")]]
    return phi, psi
