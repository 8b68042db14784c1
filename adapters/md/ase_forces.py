"""Forces from ASE calculators (EMT, Lennard-Jones, ...) and a copper cluster test system.

ASE works in angstrom and eV; the kernels in nm and kJ/mol. :class:`ASEForceField` converts:
positions ``x [nm] -> 10 x [A]``, forces ``F [eV/A] -> 964.853 F [kJ/mol/nm]``, energies
``E [eV] -> 96.485 E [kJ/mol]``. ASE calculators take one configuration at a time, so a batch is
evaluated configuration by configuration on a private copy of the ``Atoms``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from gaussspec.adapters.md.units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL

__all__ = ["ASEForceField", "copper_cluster", "copper_lennard_jones"]

_FORCE = EV_TO_KJ_PER_MOL / ANGSTROM_TO_NM  # eV/A -> kJ/mol/nm

#: Lennard-Jones parameters for copper (Halicioglu and Pound 1975): sigma in A, epsilon in eV.
CU_LJ_SIGMA_A, CU_LJ_EPSILON_EV = 2.338, 0.4093


class ASEForceField:
    """A batched force callable on top of an ASE calculator.

    Args:
        atoms: An ``ase.Atoms`` giving species, cell and periodic boundary conditions (copied).
        calculator: The ASE calculator (e.g. ``ase.calculators.emt.EMT()``).

    Attributes:
        masses: ``(N,)`` float64 tensor of masses in amu (from ASE).
        calls, configurations, seconds: Counters of sequential calls, configurations, wall-clock.

    Example::

        forces = ASEForceField(copper_cluster(), EMT())
        f = forces(positions_nm)          # (B, N, 3) -> (B, N, 3) kJ/mol/nm
    """

    def __init__(self, atoms, calculator):
        if calculator is None:
            raise ValueError("calculator is missing: pass an ASE calculator such as EMT()")
        self._atoms = atoms.copy()
        self._atoms.calc = calculator
        self.num_atoms = len(atoms)
        self.masses = torch.tensor(np.asarray(atoms.get_masses(), dtype=np.float64))
        self.calls = 0
        self.configurations = 0
        self.seconds = 0.0

    def _run(self, positions, want_forces: bool):
        array = positions.detach().cpu().double().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions, dtype=np.float64)
        if array.ndim != 3 or array.shape[1:] != (self.num_atoms, 3):
            raise ValueError(f"positions must have shape (B, {self.num_atoms}, 3) in nm, got {tuple(array.shape)}")
        start = time.perf_counter()
        energies = np.empty(len(array))
        forces = np.empty_like(array) if want_forces else None
        for n, xyz in enumerate(array):
            self._atoms.positions = xyz / ANGSTROM_TO_NM  # nm -> A
            energies[n] = self._atoms.get_potential_energy() * EV_TO_KJ_PER_MOL
            if want_forces:
                forces[n] = self._atoms.get_forces() * _FORCE
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.configurations += len(array)
        device = positions.device if isinstance(positions, torch.Tensor) else "cpu"
        return (
            torch.tensor(energies, dtype=torch.float64, device=device),
            torch.tensor(forces, dtype=torch.float64, device=device) if want_forces else None,
        )

    def energy_and_forces(self, positions):
        """``(energy (B,), forces (B, N, 3))`` in kJ/mol and kJ/mol/nm."""
        return self._run(positions, True)

    def energy(self, positions) -> torch.Tensor:
        """Potential energies ``(B,)`` in kJ/mol."""
        return self._run(positions, False)[0]

    def __call__(self, positions) -> torch.Tensor:
        """Forces ``(B, N, 3)`` in kJ/mol/nm for positions ``(B, N, 3)`` in nm."""
        return self._run(positions, True)[1]


def copper_cluster(shells: int = 3):
    """A Mackay icosahedral Cu cluster (``shells=2``: 13 atoms, 3: 55, 4: 147), relaxed with EMT.

    Returns:
        An ``ase.Atoms`` without a calculator, positions in angstrom.
    """
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.optimize import BFGS

    if not isinstance(shells, int) or shells < 2:
        raise ValueError(f"shells must be an int >= 2, got {shells!r}")
    atoms = Icosahedron("Cu", noshells=shells)
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-3, steps=500)
    atoms.calc = None
    return atoms


def copper_lennard_jones():
    """ASE's ``LennardJones`` with Halicioglu-Pound copper parameters (a cheap draft for EMT)."""
    from ase.calculators.lj import LennardJones

    return LennardJones(sigma=CU_LJ_SIGMA_A, epsilon=CU_LJ_EPSILON_EV, rc=3 * CU_LJ_SIGMA_A, smooth=True)
