"""Run an MD kernel in segments: write trajectories as it goes and stop cleanly on blow-ups.

A kernel's ``num_steps`` is one segment. :func:`simulate` runs ``num_segments`` of them, plain or
speculative, carrying the state over (for BAOAB the velocity memory goes into the next segment
through ``with_initial_velocities``). After every segment the frames are checked and written: a
trajectory that explodes (non-finite forces or positions, or an atom moving more than
``max_displacement`` nm in one step) stops with :class:`TrajectoryExplodedError`, which names the
step; every frame before it is already on disk.
"""

from __future__ import annotations

import attrs
import torch

import gaussspec as gs
from gaussspec.adapters.md.kernels import ABOBAKernel, BAOABKernel, NonFiniteForceError

__all__ = ["SimulationResult", "TrajectoryExplodedError", "simulate"]


class TrajectoryExplodedError(RuntimeError):
    """The trajectory blew up; ``step`` is the first bad step and ``frames_written`` what is on disk."""

    def __init__(self, message: str, step: int, frames_written: int):
        super().__init__(message)
        self.step = step
        self.frames_written = frames_written


@attrs.frozen
class SimulationResult:
    """Final state and cost counters of :func:`simulate`.

    Attributes:
        state: Final states ``(B, *event_shape)``.
        memory: Final velocity memory (BAOAB) or None.
        steps: Integrator steps run per chain.
        sequential_target_calls: Sequential force calls of the target (the latency that matters).
        target_evaluations: Configurations the target evaluated.
        wall_time: Seconds.
        block_efficiency: Steps per chain per round (1 for the plain chain).
        frames_written: Frames in the trajectory file.
        energies: ``(frames,)`` potential energies of chain ``chain`` at the written frames when
            ``energy_fn`` was given, else None.
    """

    state: torch.Tensor
    memory: torch.Tensor | None
    steps: int
    sequential_target_calls: int
    target_evaluations: int
    wall_time: float
    block_efficiency: float
    frames_written: int
    energies: torch.Tensor | None


def _positions(kernel, states: torch.Tensor) -> torch.Tensor:
    return ABOBAKernel.positions(states) if isinstance(kernel, ABOBAKernel) else states


def _first_bad_step(positions: torch.Tensor, max_displacement: float) -> int | None:
    """Index into ``positions`` (T+1, B, N, 3) of the first non-finite or too-far-moved frame."""
    finite = torch.isfinite(positions).flatten(1).all(dim=1)
    jumps = (positions[1:] - positions[:-1]).norm(dim=-1).flatten(1).amax(dim=1)
    bad = ~finite[1:] | ~(jumps <= max_displacement)
    if bad.any():
        return int(torch.nonzero(bad)[0, 0]) + 1
    return None


def simulate(
    kernel: gs.GaussianKernel,
    x0: torch.Tensor,
    num_segments: int,
    generator: torch.Generator,
    drafter: gs.Drafter | None = None,
    draft_length: int = 8,
    writer=None,
    chain: int = 0,
    write_every: int = 1,
    energy_fn=None,
    max_displacement: float = 0.1,
) -> SimulationResult:
    """Run ``num_segments * kernel.num_steps`` steps, plain (``drafter=None``) or speculative.

    Args:
        kernel: A :class:`BrownianKernel`, :class:`ABOBAKernel` or :class:`BAOABKernel`.
        x0: Initial states ``(B, *event_shape)``.
        num_segments: Number of segments of ``kernel.num_steps`` steps.
        generator: Randomness.
        drafter: A gaussspec drafter for speculative sampling, or None for the plain chain.
        draft_length: gamma for the speculative sampler.
        writer: A :class:`~gaussspec.adapters.md.output.TrajectoryWriter` (or anything with
            ``write(positions, energies)``), or None.
        chain: Which chain is written.
        write_every: Write every n-th step (the first frame is ``x0``).
        energy_fn: Optional ``positions (B, N, 3) -> energies (B,)`` for the written frames.
        max_displacement: nm an atom may move in one step before the run counts as exploded.

    Raises:
        TrajectoryExplodedError: Non-finite forces, means or positions, or an atom jumping more
            than ``max_displacement``; the message names the step and the frames kept.
    """
    if not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"num_segments must be a positive int, got {num_segments!r}")
    if not isinstance(write_every, int) or write_every < 1:
        raise ValueError(f"write_every must be a positive int, got {write_every!r}")
    segment = kernel.num_steps
    state, memory = x0, None
    frames, energies = 0, []
    seq_calls = evaluations = chain_rounds = 0
    wall = 0.0

    def emit(positions_frames: torch.Tensor) -> None:
        nonlocal frames
        if positions_frames.shape[0] == 0 or (writer is None and energy_fn is None):
            return
        energy = energy_fn(positions_frames[:, chain]) if energy_fn is not None else None
        if energy is not None:
            energies.append(energy)
        if writer is not None:
            writer.write(positions_frames[:, chain], energy)
        frames += positions_frames.shape[0]

    emit(_positions(kernel, x0)[None])
    for s in range(num_segments):
        offset = s * segment
        try:
            if drafter is None:
                result = gs.sample_chain(kernel, state, generator=generator, return_trajectory=True)
            else:
                sampler = gs.SpeculativeSampler(kernel, drafter, draft_length=draft_length)
                result = sampler.sample(state, generator=generator, return_trajectory=True)
        except (NonFiniteForceError, gs.NonFiniteMeanError) as error:
            raise TrajectoryExplodedError(
                f"the trajectory blew up in steps {offset}..{offset + segment} (segment {s}): {error}. "
                "NaN/inf forces: time step too long, overlapping atoms, or a bad force field. "
                f"{frames} frames up to step {offset} were written and kept.",
                step=offset,
                frames_written=frames,
            ) from error
        positions = _positions(kernel, result.trajectory)
        bad = _first_bad_step(positions, max_displacement)
        keep = positions[1:bad] if bad is not None else positions[1:]
        local = torch.arange(1, keep.shape[0] + 1)
        emit(keep[(offset + local) % write_every == 0])
        wall += result.stats.wall_time
        seq_calls += result.stats.sequential_target_calls
        evaluations += result.stats.target_evaluations
        chain_rounds += result.stats.chain_rounds
        if bad is not None:
            raise TrajectoryExplodedError(
                f"the trajectory exploded at step {offset + bad} (an atom moved more than "
                f"{max_displacement} nm in one step, or positions became NaN/inf); {frames} frames "
                "before it were written and kept. Reduce the time step or check the force field.",
                step=offset + bad,
                frames_written=frames,
            )
        state, memory = result.samples, result.memory
        if isinstance(kernel, BAOABKernel):
            kernel = kernel.with_initial_velocities(memory)
    steps = num_segments * segment
    num_chains = x0.shape[0]
    return SimulationResult(
        state=state,
        memory=memory,
        steps=steps,
        sequential_target_calls=seq_calls,
        target_evaluations=evaluations,
        wall_time=wall,
        block_efficiency=steps * num_chains / chain_rounds if chain_rounds else float("nan"),
        frames_written=frames,
        energies=torch.cat(energies) if energies else None,
    )
