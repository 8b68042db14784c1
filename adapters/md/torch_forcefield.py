"""A batched torch force field whose parameters are read from an OpenMM ``System``.

OpenMM evaluates one configuration per ``Context``; this module evaluates a whole block of
configurations ``(B, N, 3)`` in one call, which is what speculative sampling's verification pass
wants. It covers the classical fixed-charge terms of Amber-style force fields:

* ``HarmonicBondForce``:      ``E = k/2 (r - r0)^2``
* ``HarmonicAngleForce``:     ``E = k/2 (theta - theta0)^2``
* ``PeriodicTorsionForce``:   ``E = k (1 + cos(n phi - phi0))``
* ``NonbondedForce`` with ``NoCutoff`` (vacuum): Lennard-Jones with Lorentz-Berthelot mixing,
  ``E = 4 eps ((sigma/r)^12 - (sigma/r)^6)``, plus Coulomb ``E = q_i q_j / (4 pi eps0 r)``, with
  OpenMM's exceptions (scaled 1-4 pairs) and exclusions.

Forces are ``-dE/dx`` by autograd in float64; they match OpenMM's Reference platform to about
1e-10 relative. Pairs are enumerated all-against-all (O(N^2)): meant for small molecules in vacuum
(alanine dipeptide has 231 pairs). Any other force (implicit solvent, cutoffs, custom forces,
CMAP) is refused by name; ``CMMotionRemover`` is ignored because it produces no force.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["TorchForceField", "ONE_4PI_EPS0"]

#: Coulomb constant 1/(4 pi eps0) in kJ/mol nm / e^2, as OpenMM defines it.
ONE_4PI_EPS0 = 138.93545764438198

_TERMS = ("bonds", "angles", "torsions", "nonbonded")
_IGNORED_FORCES = ("CMMotionRemover",)


def _bond_terms(force) -> dict[str, torch.Tensor]:
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    index = torch.tensor([[r[0], r[1]] for r in rows], dtype=torch.long).reshape(-1, 2)
    r0 = torch.tensor([r[2].value_in_unit_system(_md_units()) for r in rows], dtype=torch.float64)
    k = torch.tensor([r[3].value_in_unit_system(_md_units()) for r in rows], dtype=torch.float64)
    return {"index": index, "r0": r0, "k": k}


def _angle_terms(force) -> dict[str, torch.Tensor]:
    rows = [force.getAngleParameters(i) for i in range(force.getNumAngles())]
    index = torch.tensor([[r[0], r[1], r[2]] for r in rows], dtype=torch.long).reshape(-1, 3)
    theta0 = torch.tensor([r[3].value_in_unit_system(_md_units()) for r in rows], dtype=torch.float64)
    k = torch.tensor([r[4].value_in_unit_system(_md_units()) for r in rows], dtype=torch.float64)
    return {"index": index, "theta0": theta0, "k": k}


def _torsion_terms(force) -> dict[str, torch.Tensor]:
    rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
    index = torch.tensor([[r[0], r[1], r[2], r[3]] for r in rows], dtype=torch.long).reshape(-1, 4)
    periodicity = torch.tensor([float(r[4]) for r in rows], dtype=torch.float64)
    phase = torch.tensor([r[5].value_in_unit_system(_md_units()) for r in rows], dtype=torch.float64)
    k = torch.tensor([r[6].value_in_unit_system(_md_units()) for r in rows], dtype=torch.float64)
    return {"index": index, "periodicity": periodicity, "phase": phase, "k": k}


def _nonbonded_terms(force, num_atoms: int) -> dict[str, torch.Tensor]:
    import openmm

    if force.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
        raise ValueError(
            "TorchForceField supports NonbondedForce with NoCutoff only (vacuum, no periodic box); "
            f"this System uses nonbonded method {force.getNonbondedMethod()}: build it with "
            "nonbondedMethod=app.NoCutoff or evaluate it with OpenMMForceField"
        )
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise ValueError("TorchForceField does not support NonbondedForce parameter offsets")
    units = _md_units()
    charge = np.empty(num_atoms)
    sigma = np.empty(num_atoms)
    epsilon = np.empty(num_atoms)
    for i in range(num_atoms):
        q, s, e = force.getParticleParameters(i)
        charge[i], sigma[i], epsilon[i] = (
            q.value_in_unit_system(units),
            s.value_in_unit_system(units),
            e.value_in_unit_system(units),
        )
    # Every pair i < j gets its own (charge product, sigma, epsilon): Lorentz-Berthelot by default,
    # overwritten by an exception (scaled 1-4 pair, or an exclusion with all zeros).
    first, second = np.triu_indices(num_atoms, k=1)
    qq = charge[first] * charge[second]
    pair_sigma = 0.5 * (sigma[first] + sigma[second])  # Lorentz rule
    pair_epsilon = np.sqrt(epsilon[first] * epsilon[second])  # Berthelot rule
    position = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(first, second))}
    for n in range(force.getNumExceptions()):
        i, j, q, s, e = force.getExceptionParameters(n)
        key = (min(i, j), max(i, j))
        slot = position[key]
        qq[slot] = q.value_in_unit_system(units)
        pair_sigma[slot] = s.value_in_unit_system(units)
        pair_epsilon[slot] = e.value_in_unit_system(units)
    keep = (qq != 0) | (pair_epsilon != 0)
    return {
        "index": torch.tensor(np.stack([first[keep], second[keep]], axis=1), dtype=torch.long),
        "qq": torch.tensor(qq[keep], dtype=torch.float64),
        "sigma": torch.tensor(pair_sigma[keep], dtype=torch.float64),
        "epsilon": torch.tensor(pair_epsilon[keep], dtype=torch.float64),
    }


def _md_units():
    import openmm.unit as unit

    return unit.md_unit_system


def _bond_energy(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    i, j = p["index"][:, 0], p["index"][:, 1]
    r = (x[:, j] - x[:, i]).norm(dim=-1)
    return (0.5 * p["k"] * (r - p["r0"]) ** 2).sum(-1)  # E = k/2 (r - r0)^2


def _angle_energy(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    i, j, k = p["index"][:, 0], p["index"][:, 1], p["index"][:, 2]
    u = x[:, i] - x[:, j]
    v = x[:, k] - x[:, j]
    # theta = atan2(|u x v|, u . v): accurate near 0 and pi, unlike acos
    theta = torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))
    return (0.5 * p["k"] * (theta - p["theta0"]) ** 2).sum(-1)  # E = k/2 (theta - theta0)^2


def _dihedral(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """IUPAC dihedral angle of atoms ``index[:, 0..3]`` (radians, in (-pi, pi])."""
    b0 = x[:, index[:, 1]] - x[:, index[:, 0]]
    b1 = x[:, index[:, 2]] - x[:, index[:, 1]]
    b2 = x[:, index[:, 3]] - x[:, index[:, 2]]
    n1 = torch.linalg.cross(b0, b1)
    n2 = torch.linalg.cross(b1, b2)
    sine = (torch.linalg.cross(n1, n2) * b1).sum(-1) / b1.norm(dim=-1)
    return torch.atan2(sine, (n1 * n2).sum(-1))  # phi = atan2((n1 x n2) . b1/|b1|, n1 . n2)


def _torsion_energy(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    phi = _dihedral(x, p["index"])
    return (p["k"] * (1 + torch.cos(p["periodicity"] * phi - p["phase"]))).sum(-1)  # E = k(1+cos(n phi - phi0))


def _nonbonded_energy(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    i, j = p["index"][:, 0], p["index"][:, 1]
    r = (x[:, j] - x[:, i]).norm(dim=-1)
    sr6 = (p["sigma"] / r) ** 6
    lennard_jones = 4 * p["epsilon"] * (sr6 * sr6 - sr6)  # E = 4 eps ((s/r)^12 - (s/r)^6)
    coulomb = ONE_4PI_EPS0 * p["qq"] / r  # E = q_i q_j / (4 pi eps0 r)
    return (lennard_jones + coulomb).sum(-1)


_ENERGY = {
    "bonds": _bond_energy,
    "angles": _angle_energy,
    "torsions": _torsion_energy,
    "nonbonded": _nonbonded_energy,
}


class TorchForceField:
    """Batched energies and forces of an OpenMM ``System``'s classical terms, in torch.

    Args:
        system: An ``openmm.System`` holding only ``HarmonicBondForce``, ``HarmonicAngleForce``,
            ``PeriodicTorsionForce``, ``NonbondedForce`` (``NoCutoff``) and optionally
            ``CMMotionRemover`` (ignored: it exerts no force).
        terms: Which terms to include, a subset of ``("bonds", "angles", "torsions",
            "nonbonded")``; all by default. A subset is a cheap "fast" force for multiple
            time-step drafters (e.g. the bonded terms only).

    Raises:
        ValueError: An unsupported force, a cutoff or periodic nonbonded method, constraints or
            virtual sites, or an unknown term name.

    Example::

        ff = TorchForceField(system)
        forces = ff(positions)                 # (B, N, 3) nm -> (B, N, 3) kJ/mol/nm
        energy = ff.energy(positions)          # (B,) kJ/mol
    """

    def __init__(self, system, terms: tuple[str, ...] = _TERMS):
        unknown = [t for t in terms if t not in _TERMS]
        if unknown or not terms:
            raise ValueError(f"terms must be a non-empty subset of {_TERMS}, got {tuple(terms)}")
        self.terms = tuple(terms)
        self.num_atoms = system.getNumParticles()
        if system.getNumConstraints():
            raise ValueError(
                f"the System has {system.getNumConstraints()} constraints; the gaussspec MD "
                "integrators are unconstrained: build it with constraints=None, rigidWater=False"
            )
        if any(system.isVirtualSite(i) for i in range(self.num_atoms)):
            raise ValueError("TorchForceField does not support virtual sites")
        found: dict[str, object] = {}
        kinds = {
            "HarmonicBondForce": "bonds",
            "HarmonicAngleForce": "angles",
            "PeriodicTorsionForce": "torsions",
            "NonbondedForce": "nonbonded",
        }
        for force in system.getForces():
            name = type(force).__name__
            if name in _IGNORED_FORCES:
                continue
            if name not in kinds:
                raise ValueError(
                    f"TorchForceField does not implement {name}; it supports {sorted(kinds)} "
                    "(vacuum, no cutoff). Evaluate this System with OpenMMForceField instead"
                )
            if kinds[name] in found:
                raise ValueError(f"the System holds more than one {name}; merge them first")
            found[kinds[name]] = force
        self._parameters: dict[str, dict[str, torch.Tensor]] = {}
        readers = {"bonds": _bond_terms, "angles": _angle_terms, "torsions": _torsion_terms}
        for term in self.terms:
            if term not in found:
                continue
            if term == "nonbonded":
                self._parameters[term] = _nonbonded_terms(found[term], self.num_atoms)
            else:
                self._parameters[term] = readers[term](found[term])

    def _check(self, positions: torch.Tensor) -> torch.Tensor:
        if not isinstance(positions, torch.Tensor):
            positions = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
        if positions.ndim != 3 or positions.shape[1:] != (self.num_atoms, 3):
            raise ValueError(
                f"positions must have shape (B, {self.num_atoms}, 3) in nm, got {tuple(positions.shape)}"
            )
        return positions

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for term, parameters in self._parameters.items():
            p = {k: v.to(x.device) if v.dtype == torch.long else v.to(x.device, x.dtype) for k, v in parameters.items()}
            total = total + _ENERGY[term](x, p)
        return total

    def energy(self, positions: torch.Tensor) -> torch.Tensor:
        """Potential energy in kJ/mol, shape ``(B,)``, for positions ``(B, N, 3)`` in nm."""
        with torch.no_grad():
            return self._energy(self._check(positions))

    def energy_and_forces(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(energy (B,), forces (B, N, 3))`` in kJ/mol and kJ/mol/nm; forces = -dE/dx."""
        positions = self._check(positions)
        with torch.inference_mode(False), torch.enable_grad():  # works under no_grad/inference_mode too
            x = positions.detach().clone().requires_grad_(True)
            energy = self._energy(x)
            (gradient,) = torch.autograd.grad(energy.sum(), x)
        return energy.detach(), -gradient  # F = -grad E

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        """Forces ``(B, N, 3)`` in kJ/mol/nm for positions ``(B, N, 3)`` in nm."""
        return self.energy_and_forces(positions)[1]

    def __repr__(self) -> str:
        return f"TorchForceField(num_atoms={self.num_atoms}, terms={self.terms})"

