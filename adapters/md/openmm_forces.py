"""Forces from an OpenMM ``System``, evaluated on a pool of ``Context`` objects.

OpenMM has no batched force evaluation: a ``Context`` holds one configuration. Speculative
sampling verifies a block of ``gamma + 1`` configurations per chain in one call, so
:class:`OpenMMForceField` spreads the block's configurations over a small pool of Contexts
(each with its own dummy integrator), evaluated by a thread pool when the pool has more than one
Context (OpenMM releases the GIL while it computes).

Systems the Gaussian integrators cannot honour are refused at construction: constraints (SHAKE,
SETTLE, rigid water), virtual sites (massless particles), and barostats or thermostats that act
through the integrator. ``CMMotionRemover`` is ignored (it exerts no force; these integrators do
not remove centre-of-mass motion).
"""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import torch

__all__ = ["OpenMMForceField", "masses_from_system", "check_system"]

_REFUSED_FORCES = ("MonteCarloBarostat", "MonteCarloAnisotropicBarostat", "MonteCarloMembraneBarostat",
                   "MonteCarloFlexibleBarostat", "AndersenThermostat", "ATMForce")


def check_system(system) -> None:
    """Refuse a System that the unconstrained Gaussian integrators cannot simulate faithfully.

    Raises:
        ValueError: The System has constraints, virtual sites, massless particles, or a
            barostat/thermostat force.
    """
    num_constraints = system.getNumConstraints()
    if num_constraints:
        raise ValueError(
            f"the System has {num_constraints} distance constraints (e.g. constraints=HBonds or rigid "
            "water); the gaussspec MD kernels are unconstrained Gaussian steps and cannot honour "
            "them. Rebuild it with createSystem(..., constraints=None, rigidWater=False) and a "
            "time step of at most ~1 fs, or with hydrogen mass repartitioning (hydrogenMass=...)."
        )
    virtual = [i for i in range(system.getNumParticles()) if system.isVirtualSite(i)]
    if virtual:
        raise ValueError(
            f"the System has {len(virtual)} virtual sites (e.g. TIP4P/TIP5P water, first {virtual[:5]}); "
            "they are positioned by OpenMM's integrators, which these kernels replace: not supported"
        )
    for force in system.getForces():
        if type(force).__name__ in _REFUSED_FORCES:
            raise ValueError(
                f"the System holds a {type(force).__name__}, which acts through OpenMM's integrator; "
                "the gaussspec MD kernels simulate NVT Langevin/Brownian dynamics only: remove it"
            )


def masses_from_system(system) -> torch.Tensor:
    """Per-particle masses in amu as a float64 ``(N,)`` tensor.

    Raises:
        ValueError: A particle has zero mass (OpenMM's convention for a fixed atom or a virtual
            site), which these integrators cannot move consistently.
    """
    import openmm.unit as unit

    masses = np.array(
        [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())]
    )
    if (masses <= 0).any():
        bad = np.nonzero(masses <= 0)[0][:10].tolist()
        raise ValueError(
            f"particles {bad} have zero mass (fixed atoms or virtual sites); not supported"
        )
    return torch.tensor(masses, dtype=torch.float64)


class OpenMMForceField:
    """A batched force callable backed by OpenMM Contexts.

    Args:
        system: The ``openmm.System`` (checked with :func:`check_system`).
        platform: ``"Reference"`` (double precision, slow) or ``"CPU"`` (mixed precision,
            vectorised); any other OpenMM platform name is passed through.
        num_contexts: Size of the Context pool; configurations of one call are spread over it.
        threads: CPU platform threads per Context (``"Threads"`` property); ignored elsewhere.

    Attributes:
        calls: Number of ``__call__``/``energy_and_forces`` invocations (sequential calls).
        configurations: Number of configurations evaluated in total.
        seconds: Wall-clock spent inside OpenMM.

    Example::

        forces = OpenMMForceField(system, platform="CPU")
        f = forces(positions)              # (B, N, 3) nm -> (B, N, 3) kJ/mol/nm, float64

    A configuration holding NaN or inf is not passed to OpenMM: its energy and forces come back
    NaN (a drafted state after a draft's force blew up: the sampler drafts that round again).
    """

    def __init__(self, system, platform: str = "Reference", num_contexts: int = 1, threads: int = 1):
        import openmm

        check_system(system)
        if not isinstance(num_contexts, int) or num_contexts < 1:
            raise ValueError(f"num_contexts must be a positive int, got {num_contexts!r}")
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        if platform not in names:
            raise ValueError(f"OpenMM platform {platform!r} is not available; available: {names}")
        self.platform = platform
        self.num_atoms = system.getNumParticles()
        properties = {"Threads": str(threads)} if platform == "CPU" else {}
        self._contexts = []
        for _ in range(num_contexts):
            integrator = openmm.VerletIntegrator(0.001)
            context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)
            self._contexts.append((context, integrator))
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(max_workers=num_contexts) if num_contexts > 1 else None
        )
        self.calls = 0
        self.configurations = 0
        self.seconds = 0.0

    def _evaluate_slice(self, context, positions: np.ndarray, want_forces: bool):
        energies = np.full(len(positions), np.nan)
        forces = np.full_like(positions, np.nan) if want_forces else None
        for n, xyz in enumerate(positions):
            if not np.isfinite(xyz).all():  # NaN in, NaN out: OpenMM cannot place the atoms
                continue
            context.setPositions(xyz)
            state = context.getState(getEnergy=True, getForces=want_forces)
            energies[n] = state.getPotentialEnergy()._value  # kJ/mol
            if want_forces:
                forces[n] = state.getForces(asNumpy=True)._value  # kJ/mol/nm
        return energies, forces

    def _run(self, positions, want_forces: bool):
        if isinstance(positions, torch.Tensor):
            array = positions.detach().cpu().to(torch.float64).numpy()
        else:
            array = np.asarray(positions, dtype=np.float64)
        if array.ndim != 3 or array.shape[1:] != (self.num_atoms, 3):
            raise ValueError(
                f"positions must have shape (B, {self.num_atoms}, 3) in nm, got {tuple(array.shape)}"
            )
        start = time.perf_counter()
        chunks = np.array_split(np.arange(len(array)), len(self._contexts))
        if self._pool is None or len(array) == 1:
            results = [self._evaluate_slice(self._contexts[0][0], array, want_forces)]
        else:
            futures = [
                self._pool.submit(self._evaluate_slice, ctx, array[idx], want_forces)
                for (ctx, _), idx in zip(self._contexts, chunks)
                if len(idx)
            ]
            results = [f.result() for f in futures]
        energies = np.concatenate([r[0] for r in results])
        forces = np.concatenate([r[1] for r in results]) if want_forces else None
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.configurations += len(array)
        device = positions.device if isinstance(positions, torch.Tensor) else "cpu"
        energy_t = torch.tensor(energies, dtype=torch.float64, device=device)
        forces_t = torch.tensor(forces, dtype=torch.float64, device=device) if want_forces else None
        return energy_t, forces_t

    def energy_and_forces(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """``(energy (B,), forces (B, N, 3))`` in kJ/mol and kJ/mol/nm, float64."""
        return self._run(positions, True)

    def energy(self, positions) -> torch.Tensor:
        """Potential energies ``(B,)`` in kJ/mol."""
        return self._run(positions, False)[0]

    def __call__(self, positions) -> torch.Tensor:
        """Forces ``(B, N, 3)`` in kJ/mol/nm for positions ``(B, N, 3)`` in nm."""
        return self._run(positions, True)[1]

    def close(self) -> None:
        """Shut the thread pool down (Contexts are freed with the object)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __repr__(self) -> str:
        return (
            f"OpenMMForceField(num_atoms={self.num_atoms}, platform={self.platform!r}, "
            f"num_contexts={len(self._contexts)})"
        )
