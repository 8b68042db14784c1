"""Brownian, ABOBA and BAOAB Langevin integrators as Gaussian kernels (ALGORITHMS section 7).

All three take ``(force_fn, masses, temperature, friction, timestep, num_steps)`` in OpenMM units
(nm, ps, kJ/mol, amu, K; friction in 1/ps), where ``force_fn`` maps positions ``(B, N, 3)`` in nm
to forces ``(B, N, 3)`` in kJ/mol/nm. One kernel step is one integrator step; ``evaluate`` is the
force call (the expensive part) and ``mean_from`` the cheap rest, so the core's frozen and free
drafters reuse stale forces.

State layouts (``B`` chains, ``N`` atoms):

* :class:`BrownianKernel`: positions ``(B, N, 3)``.
* :class:`ABOBAKernel`: positions and velocities stacked, ``(B, 2, N, 3)``: ``state[:, 0]`` are
  positions (nm), ``state[:, 1]`` velocities (nm/ps). Build one with :func:`aboba_state`.
* :class:`BAOABKernel`: positions ``(B, N, 3)`` are the Gaussian state; the velocity is carried as
  a deterministic *memory* ``(B, N, 3)``: the velocity after the O step and the second A half-step,
  before the closing B half-kick. It is exactly the velocity OpenMM's
  ``LangevinMiddleIntegrator`` stores in its Context (the on-step velocity is
  ``memory + dt/2 F/m``), so OpenMM velocities can be passed as initial memory.

Multiple time-step (MTS) splitting: pass ``fast_force_fn`` (a cheap force, e.g. the bonded terms
or a vacuum force field for an implicit-solvent target). ``evaluate`` then returns the tuple
``(F(x), F_fast(x), x, known)`` and ``mean_from`` at a state ``y`` uses
``F(x) + F_fast(y) - F_fast(x)`` (exactly ``F(y)`` when ``y`` is ``x``). ``F_fast(x)`` is computed
the first time a chain drafts from ``x`` and kept in the tuple (``known`` marks its rows), so
plain steps and the states of a round that nobody drafts from pay for ``F`` alone. The target kernel is unchanged, but the core's
``FrozenDrafter``/``FreeDrafter`` now freeze only the slow part ``F - F_fast`` and recompute the
fast part at every draft step: a RESPA-like drafter whose acceptance is far higher than freezing
the whole force (the bonded forces change by hundreds of kJ/mol/nm per femtosecond).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch

import gaussspec as gs
from gaussspec.adapters.md.units import as_masses, as_scalar, thermal_energy

__all__ = [
    "BrownianKernel",
    "ABOBAKernel",
    "BAOABKernel",
    "NonFiniteForceError",
    "aboba_state",
    "maxwell_boltzmann_velocities",
]

ForceFn = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteForceError(FloatingPointError):
    """An MD kernel's ``forces`` met NaN or inf forces; the message names the step(s) and chain(s)."""


def maxwell_boltzmann_velocities(
    masses, temperature, num_chains: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Velocities ``(num_chains, N, 3)`` in nm/ps drawn from the Maxwell-Boltzmann law at ``temperature``.

    Args:
        masses: ``(N,)`` masses in amu.
        temperature: Temperature in K.
        num_chains: Number of independent draws ``B``.
        generator: Randomness source.
    """
    masses = as_masses(masses)
    temperature = as_scalar(temperature, "temperature", "temperature", allow_zero=True)
    if not isinstance(num_chains, int) or num_chains < 1:
        raise ValueError(f"num_chains must be a positive int, got {num_chains!r}")
    std = torch.sqrt(thermal_energy(temperature) / masses)[:, None]  # sd of v = sqrt(kT / m)
    noise = torch.randn((num_chains, masses.numel(), 3), generator=generator, dtype=torch.float64)
    return std * noise


def aboba_state(positions: torch.Tensor, velocities: torch.Tensor) -> torch.Tensor:
    """Stack positions and velocities ``(B, N, 3)`` into an ABOBA state ``(B, 2, N, 3)``."""
    if positions.shape != velocities.shape or positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(
            "positions and velocities must both have shape (B, N, 3), got "
            f"{tuple(positions.shape)} and {tuple(velocities.shape)}"
        )
    return torch.stack([positions, velocities], dim=1)


def _describe_bad_rows(bad: torch.Tensor, t: torch.Tensor) -> str:
    chains = torch.nonzero(bad).flatten()
    steps = sorted({int(s) for s in t[chains].tolist()}) if t.numel() == bad.numel() else []
    return f"step(s) t={steps[:10]} of chain(s) {chains[:10].tolist()}"


class _MDKernel(gs.GaussianKernel):
    """Shared validation, force calls and the MTS split of the three integrators."""

    _allow_zero_friction = True

    def __init__(
        self,
        force_fn: ForceFn,
        masses,
        temperature,
        friction,
        timestep,
        num_steps: int,
        *,
        fast_force_fn: ForceFn | None = None,
    ):
        if not callable(force_fn):
            raise TypeError(
                "force_fn must be callable: positions (B, N, 3) in nm -> forces (B, N, 3) in kJ/mol/nm"
            )
        if fast_force_fn is not None and not callable(fast_force_fn):
            raise TypeError("fast_force_fn must be callable or None")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int (integrator steps), got {num_steps!r}")
        self.force_fn = force_fn
        self.fast_force_fn = fast_force_fn
        self.masses = as_masses(masses)
        self.temperature = as_scalar(temperature, "temperature", "temperature", allow_zero=True)
        self.friction = as_scalar(friction, "friction", "friction", allow_zero=self._allow_zero_friction)
        self.timestep = as_scalar(timestep, "timestep", "timestep", allow_zero=False)
        self.num_steps = num_steps
        self.num_atoms = self.masses.numel()
        self.kT = thermal_energy(self.temperature)
        self._inverse_mass = (1.0 / self.masses)[:, None]  # (N, 1), broadcasts over xyz
        self._covariance = self._build_covariance()

    # --- the pieces each integrator defines -------------------------------------------------

    def _build_covariance(self) -> gs.Covariance:
        raise NotImplementedError

    def _force_positions(self, x: torch.Tensor) -> torch.Tensor:
        """The positions at which the step evaluates the force."""
        return x

    # --- public API -----------------------------------------------------------------------------

    def covariance(self, t: torch.Tensor) -> gs.Covariance:
        """The step covariance (time-homogeneous; one object shared by :meth:`with_forces` copies)."""
        return self._covariance

    def forces(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``F`` at the step's force positions of states ``x`` at steps ``t``, checked.

        Raises:
            NonFiniteForceError: A force is NaN or inf (the message names the step and chain).
        """
        self._check_state(x)
        return self._call(self.force_fn, self._force_positions(x), t, "force_fn", strict=True)

    def evaluate(self, x: torch.Tensor, t: torch.Tensor) -> Any:
        """The sampler's force call: ``F`` at the step's force positions, or ``(F, F_fast,
        positions, known)`` with MTS.

        A chain's row whose force is NaN or inf comes back so (unlike :meth:`forces`): the
        sampler evaluates drafted states too, and a draft that ran where the force field blows
        up is rejected there; a chain that would step from such a state (a plain step, or an
        accepted draft) raises :class:`gaussspec.NonFiniteMeanError` naming the step and chain.
        """
        self._check_state(x)
        positions = self._force_positions(x)
        force = self._call(self.force_fn, positions, t, "force_fn", strict=False)
        if self.fast_force_fn is None:
            return force
        # F_fast(x) is computed on first use (a draft step from x), not here: a step that is not
        # drafted from (plain steps, most of a round's states) pays for F alone
        known = torch.zeros(positions.shape[0], dtype=torch.bool, device=positions.device)
        return force, torch.empty_like(force), positions, known

    def with_forces(self, force_fn: ForceFn, fast_force_fn: ForceFn | None = None):
        """A copy of this kernel with other forces and the same covariance object (a draft kernel)."""
        twin = copy.copy(self)
        if not callable(force_fn):
            raise TypeError("force_fn must be callable")
        twin.force_fn = force_fn
        twin.fast_force_fn = fast_force_fn
        return twin

    # --- helpers ----------------------------------------------------------------------------

    def _check_state(self, x: torch.Tensor) -> None:
        expected = (*self.event_shape,)
        if not isinstance(x, torch.Tensor) or x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} states must have shape (B, {', '.join(map(str, expected))}), got {shape}")

    def _call(self, fn: ForceFn, positions: torch.Tensor, t: torch.Tensor, name: str,
              strict: bool) -> torch.Tensor:
        force = fn(positions)
        if not isinstance(force, torch.Tensor):
            force = torch.as_tensor(force)
        if force.shape != positions.shape:
            raise ValueError(
                f"{name} must return forces of shape {tuple(positions.shape)} (kJ/mol/nm), got {tuple(force.shape)}"
            )
        force = force.to(positions.device, positions.dtype)
        if not strict:
            return force
        finite = torch.isfinite(force).reshape(force.shape[0], -1).all(dim=1)
        if not finite.all():
            raise NonFiniteForceError(
                f"{name} returned NaN/inf forces at {_describe_bad_rows(~finite, t)}: the trajectory "
                "has blown up (time step too long, overlapping atoms, or a bad force field)"
            )
        return force

    def _force(self, positions: torch.Tensor, evaluation: Any) -> torch.Tensor:
        """The force to use at ``positions`` given an evaluation made at (possibly) other positions."""
        if isinstance(evaluation, torch.Tensor):
            return evaluation
        force, fast, reference, known = evaluation
        force = force.to(positions.dtype)
        if positions is reference:  # the evaluation's own states (plain steps): exactly F
            return force
        moved = (positions != reference).reshape(positions.shape[0], -1).any(dim=1)
        if not moved.any():
            return force
        missing = moved & ~known
        if missing.any():  # F_fast at the reference states, once per evaluation (kept in place)
            fast[missing] = self.fast_force_fn(reference[missing]).to(fast.dtype)
            known |= missing
        # MTS draft force: F(x_ref) + F_fast(y) - F_fast(x_ref); exactly F(y) at y = x_ref
        fresh = self.fast_force_fn(positions[moved]).to(positions.dtype)
        corrected = force.clone()
        corrected[moved] = force[moved] + fresh - fast[moved]
        return corrected

    def _kT_dt(self) -> float:
        return self.kT * self.timestep

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_atoms={self.num_atoms}, temperature={self.temperature} K, "
            f"friction={self.friction}/ps, timestep={self.timestep} ps, num_steps={self.num_steps}, "
            f"mts={self.fast_force_fn is not None})"
        )


class BrownianKernel(_MDKernel):
    """Overdamped Langevin (Brownian) dynamics, OpenMM's ``BrownianIntegrator``.

    ``x' = x + dt/(gamma m) F(x) + sqrt(2 kT dt/(gamma m)) xi``; the state is positions
    ``(B, N, 3)`` and the covariance is diagonal and state-independent.

    Args:
        force_fn: Positions ``(B, N, 3)`` nm -> forces ``(B, N, 3)`` kJ/mol/nm.
        masses: ``(N,)`` masses in amu.
        temperature: K (>= 0).
        friction: 1/ps (> 0).
        timestep: ps (> 0).
        num_steps: Number of integrator steps.
        fast_force_fn: Optional cheap force for MTS drafters (module docstring).
    """

    _allow_zero_friction = False

    def __init__(self, force_fn, masses, temperature, friction, timestep, num_steps, *, fast_force_fn=None):
        super().__init__(force_fn, masses, temperature, friction, timestep, num_steps, fast_force_fn=fast_force_fn)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.num_atoms, 3)

    def _build_covariance(self):
        mobility = self.timestep / (self.friction * self.masses)  # dt / (gamma m)
        std = torch.sqrt(2 * self.kT * mobility)[:, None]  # sqrt(2 kT dt / (gamma m))
        return gs.DiagonalCovariance(std)

    def mean_from(self, x, t, evaluation, memory=None):
        force = self._force(x, evaluation)
        mobility = (self.timestep / self.friction) * self._inverse_mass.to(x.device, x.dtype)
        return x + mobility * force  # x' = x + dt/(gamma m) F(x)


class ABOBAKernel(_MDKernel):
    """Underdamped Langevin dynamics, ABOBA splitting; state ``(B, 2, N, 3)`` = (positions, velocities).

    With ``c = exp(-gamma dt)`` and ``a = F(x_h) / m``::

        x_h = x + dt/2 v                                    (A, no force)
        v'  = c (v + dt/2 a) + dt/2 a + sqrt((1 - c^2) kT/m) xi     (B O B)
        x'  = x_h + dt/2 v'                                 (A)

    Only ``v'`` is random and ``x'`` is the same affine function of it for draft and target, so
    the step is Gaussian with a rectangular noise factor ``L = [dt/2 S; S]`` (``S =
    diag(sqrt((1-c^2) kT/m))``, shape ``(6N, 3N)``), a :class:`gaussspec.FactorCovariance`
    (ALGORITHMS sections 6 and 7). The force is evaluated at the half-step positions ``x_h``.

    Args: as :class:`BrownianKernel`, friction >= 0 (0 gives velocity Verlet, noise-free).
    """

    def __init__(self, force_fn, masses, temperature, friction, timestep, num_steps, *, fast_force_fn=None):
        super().__init__(force_fn, masses, temperature, friction, timestep, num_steps, fast_force_fn=fast_force_fn)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2, self.num_atoms, 3)

    def _decay(self) -> float:
        return math.exp(-self.friction * self.timestep)  # c = exp(-gamma dt)

    def _build_covariance(self):
        c = self._decay()
        sigma = torch.sqrt((1 - c * c) * self.kT / self.masses)  # sqrt((1 - c^2) kT / m)
        diag = torch.diag(sigma.repeat_interleave(3))  # (3N, 3N), atom-major like (N, 3)
        factor = torch.cat([0.5 * self.timestep * diag, diag], dim=0)  # L = [dt/2 S; S]
        return gs.FactorCovariance(factor)

    def _force_positions(self, x):
        return x[:, 0] + 0.5 * self.timestep * x[:, 1]  # x_h = x + dt/2 v

    def mean_from(self, x, t, evaluation, memory=None):
        half = self._force_positions(x)
        force = self._force(half, evaluation)
        c = self._decay()
        accel = force * self._inverse_mass.to(x.device, x.dtype)
        v_new = c * x[:, 1] + (1 + c) * 0.5 * self.timestep * accel  # v' = c(v + dt/2 a) + dt/2 a
        x_new = half + 0.5 * self.timestep * v_new  # x' = x_h + dt/2 v'
        return torch.stack([x_new, v_new], dim=1)

    @staticmethod
    def positions(states: torch.Tensor) -> torch.Tensor:
        """Positions ``(..., N, 3)`` of ABOBA states ``(..., 2, N, 3)``."""
        return states[..., 0, :, :]

    @staticmethod
    def velocities(states: torch.Tensor) -> torch.Tensor:
        """Velocities ``(..., N, 3)`` of ABOBA states ``(..., 2, N, 3)``."""
        return states[..., 1, :, :]


class BAOABKernel(_MDKernel):
    """Underdamped Langevin dynamics, BAOAB splitting: OpenMM's ``LangevinMiddleIntegrator``.

    The Gaussian state is the positions ``(B, N, 3)``; the memory ``u`` (``(B, N, 3)``, nm/ps) is
    the velocity after O and the second A half-step, before the closing B half-kick (OpenMM's
    stored velocity). With ``c = exp(-gamma dt)`` and ``a = F(x) / m``::

        v1 = u + dt a                                   (B of this step + B of the last one)
        x' = x + dt/2 v1 + dt/2 (c v1 + sqrt((1 - c^2) kT/m) xi)      (A O A)
           ~ N(x + (1 + c) dt/2 v1,  (dt/2)^2 (1 - c^2) kT/m)
        u' = c v1 + sqrt(...) xi = 2 (x' - x)/dt - v1   (next_memory: no force at x')

    Args: as :class:`ABOBAKernel`, plus
        initial_velocities: ``(N, 3)``, ``(1, N, 3)`` (shared by all chains) or ``(B, N, 3)``
            velocities in nm/ps used as the initial memory (OpenMM Context velocities fit as they are); ``None`` starts at rest. Use
            :func:`maxwell_boltzmann_velocities` for a thermal start.
    """

    has_memory = True

    def __init__(
        self,
        force_fn,
        masses,
        temperature,
        friction,
        timestep,
        num_steps,
        *,
        fast_force_fn=None,
        initial_velocities: torch.Tensor | None = None,
    ):
        super().__init__(force_fn, masses, temperature, friction, timestep, num_steps, fast_force_fn=fast_force_fn)
        self.initial_velocities = self._check_velocities(initial_velocities)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.num_atoms, 3)

    def _decay(self) -> float:
        return math.exp(-self.friction * self.timestep)  # c = exp(-gamma dt)

    def _build_covariance(self):
        c = self._decay()
        std = 0.5 * self.timestep * torch.sqrt((1 - c * c) * self.kT / self.masses)  # dt/2 sqrt((1-c^2) kT/m)
        return gs.DiagonalCovariance(std[:, None])

    def _check_velocities(self, velocities):
        if velocities is None:
            return None
        velocities = torch.as_tensor(velocities, dtype=torch.float64)
        if velocities.shape[-2:] != (self.num_atoms, 3) or velocities.ndim not in (2, 3):
            raise ValueError(
                f"initial_velocities must have shape ({self.num_atoms}, 3) or (B, {self.num_atoms}, 3) "
                f"in nm/ps, got {tuple(velocities.shape)}"
            )
        if not torch.isfinite(velocities).all():
            raise ValueError("initial_velocities must be finite")
        return velocities

    def with_initial_velocities(self, velocities: torch.Tensor | None):
        """A copy of this kernel starting from other velocities (same covariance object)."""
        twin = copy.copy(self)
        twin.initial_velocities = self._check_velocities(velocities)
        return twin

    def initial_memory(self, x: torch.Tensor) -> torch.Tensor:
        self._check_state(x)
        if self.initial_velocities is None:
            return torch.zeros_like(x)
        velocities = self.initial_velocities.to(x.device, x.dtype)
        if velocities.ndim == 2 or velocities.shape[0] == 1:
            return velocities.expand_as(x).clone()
        if velocities.shape[0] != x.shape[0]:
            raise ValueError(
                f"initial_velocities hold {velocities.shape[0]} chains but x0 has {x.shape[0]}"
            )
        return velocities.clone()

    def _half_kicked(self, x, evaluation, memory):
        force = self._force(x, evaluation)
        return memory + self.timestep * force * self._inverse_mass.to(x.device, x.dtype)  # v1 = u + dt a

    def mean_from(self, x, t, evaluation, memory=None):
        if memory is None:
            raise ValueError("BAOABKernel.mean_from needs the memory (velocities) as 4th argument")
        v1 = self._half_kicked(x, evaluation, memory)
        return x + (1 + self._decay()) * 0.5 * self.timestep * v1  # E[x'] = x + (1 + c) dt/2 v1

    def next_memory(self, x, t, memory, evaluation, x_next):
        v1 = self._half_kicked(x, evaluation, memory)
        return 2.0 * (x_next - x) / self.timestep - v1  # u' = 2 (x' - x)/dt - v1

    def on_step_velocities(self, memory: torch.Tensor, forces: torch.Tensor) -> torch.Tensor:
        """Full-step velocities ``u + dt/2 F/m`` (for kinetic energies) from memory and forces at x."""
        return memory + 0.5 * self.timestep * forces * self._inverse_mass.to(memory.device, memory.dtype)
