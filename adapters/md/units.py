"""OpenMM units and input validation for the molecular dynamics adapter.

Every quantity is in OpenMM's unit system: positions in nm, time in ps, energy in kJ/mol, mass
in amu (g/mol), temperature in K, forces in kJ/mol/nm and friction in 1/ps. In these units
``1 kJ/mol = 1 amu nm^2 / ps^2``, so ``force / mass`` is an acceleration in nm/ps^2 without any
conversion factor.

Plain numbers are read in those units. ``openmm.unit.Quantity`` values are converted (and refused
when their dimension is wrong), so ``2 * unit.femtoseconds`` and ``0.002`` mean the same time step.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch

__all__ = [
    "BOLTZMANN_KJ_PER_MOL_K",
    "EV_TO_KJ_PER_MOL",
    "ANGSTROM_TO_NM",
    "as_masses",
    "as_scalar",
]

#: Boltzmann constant in kJ/mol/K (the value OpenMM uses).
BOLTZMANN_KJ_PER_MOL_K = 0.0083144626
#: One electronvolt in kJ/mol.
EV_TO_KJ_PER_MOL = 96.48533212331002
#: One angstrom in nm.
ANGSTROM_TO_NM = 0.1

# The OpenMM unit each argument is expressed in, by kind.
_UNITS = {
    "temperature": ("kelvin", "K"),
    "friction": ("/picosecond", "1/ps"),
    "timestep": ("picosecond", "ps"),
    "mass": ("dalton", "amu"),
}


def _strip_unit(value, kind: str, name: str):
    """Convert an ``openmm.unit.Quantity`` to a plain value in OpenMM units; pass others through."""
    if not hasattr(value, "value_in_unit"):
        return value
    import openmm.unit as unit  # only reached when the caller already uses openmm.unit

    target = {
        "temperature": unit.kelvin,
        "friction": unit.picosecond**-1,
        "timestep": unit.picosecond,
        "mass": unit.dalton,
    }[kind]
    try:
        return value.value_in_unit(target)
    except TypeError as error:
        raise ValueError(
            f"{name} has unit {value.unit}, which is not a {kind}; pass a plain number in "
            f"{_UNITS[kind][1]} or an openmm.unit quantity of that dimension"
        ) from error


def as_scalar(value, kind: str, name: str, *, allow_zero: bool) -> float:
    """Validate a scalar physical argument and return it as a float in OpenMM units.

    Args:
        value: A real number (in OpenMM units) or an ``openmm.unit.Quantity``.
        kind: One of ``"temperature"``, ``"friction"``, ``"timestep"``.
        name: The argument name, for messages.
        allow_zero: Whether zero is accepted (else the value must be > 0).

    Returns:
        The value as a Python float.

    Raises:
        ValueError: Wrong dimension, not finite, negative (or zero when not allowed).
        TypeError: Not a number.
    """
    raw = _strip_unit(value, kind, name)
    if isinstance(raw, torch.Tensor) and raw.numel() == 1:
        raw = raw.item()
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.item()
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise TypeError(
            f"{name} must be a real number in {_UNITS[kind][1]} (or an openmm.unit quantity), got "
            f"{type(raw).__name__}"
        )
    raw = float(raw)
    if not math.isfinite(raw):
        raise ValueError(f"{name} must be finite, got {raw}")
    if raw < 0 or (raw == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} {_UNITS[kind][1]}, got {raw}")
    if kind == "timestep" and raw > 0.02:
        warnings.warn(
            f"timestep = {raw} ps is longer than 20 fs; the time step is in picoseconds "
            f"(2 fs = 0.002). Atomistic systems explode at such steps.",
            stacklevel=3,
        )
    return raw


def as_masses(masses, name: str = "masses") -> torch.Tensor:
    """Validate per-atom masses and return them as a float64 ``(N,)`` tensor in amu.

    Args:
        masses: A sequence, array or tensor of ``N`` positive masses in amu (or an
            ``openmm.unit.Quantity`` wrapping one).
        name: The argument name, for messages.

    Raises:
        ValueError: Missing, not 1-D, empty, not finite, or not strictly positive (massless
            particles such as virtual sites cannot be integrated).
    """
    if masses is None:
        raise ValueError(
            f"{name} is missing: pass the (N,) per-atom masses in amu (for an OpenMM System, "
            "gaussspec.adapters.md.masses_from_system(system))"
        )
    masses = _strip_unit(masses, "mass", name)
    try:
        tensor = torch.as_tensor(np.asarray(masses, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an (N,) array of numbers in amu") from error
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty (N,) array in amu, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite")
    if (tensor <= 0).any():
        bad = torch.nonzero(tensor <= 0).flatten().tolist()[:10]
        raise ValueError(
            f"{name} must be > 0 amu; atoms {bad} have mass <= 0 (massless particles such as "
            "virtual sites are not supported by these integrators)"
        )
    return tensor


def thermal_energy(temperature: float) -> float:
    """``kT`` in kJ/mol for a temperature in K."""
    return BOLTZMANN_KJ_PER_MOL_K * temperature  # kT = k_B T
