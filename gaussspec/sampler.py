"""The sampler loop: the plain chain and the ragged speculative round loop.

One speculative round, for every unfinished chain at once (ARCHITECTURE, data flow)::

    drafter proposes up to gamma steps  ->  ONE batched target call on the drafted states
    ->  log ratios -> accepted length tau per chain (token or block verification)
    ->  residual draw (weight c) or bonus step from the target  ->  chain advances tau + 1 steps

Chains are ragged: each advances by its own accepted length, drafts at most up to its own end and
leaves the batch when it reaches ``num_steps``; per-chain step indices reach the kernels.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Callable

import attrs
import numpy as np
import torch

from gaussspec.adaptive import AdaptiveDraftLength
from gaussspec.checkpoint import Checkpointing, load_checkpoint, open_trajectory, save_checkpoint
from gaussspec.compiled import compilations, fused_step, gather_rows, host_grid
from gaussspec.coupling import COUPLINGS, reflection_noise, residual_noise
from gaussspec.covariance import IsotropicCovariance
from gaussspec.drafters import DRAFTER_NAMES, Drafter
from gaussspec.kernel import GaussianKernel
from gaussspec.randomness import Randomness
from gaussspec.stats import SamplingStats
from gaussspec.verification import (
    VERIFICATIONS,
    accepted_lengths,
    log_ratios,
    range_tolerance,
    whitened_gaps,
)

__all__ = ["SampleResult", "SpeculativeSampler", "sample_chain", "NonFiniteMeanError"]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}  # the compiled paths' dtypes


class NonFiniteMeanError(FloatingPointError):
    """A kernel returned NaN or inf; the message names the kernel, the step and the chain."""


class _DraftRanOff(Exception):
    """A round's draft mean was not finite at a drafted state: draft the round again with the
    fallback (``m_p := x`` there) from the same noises."""


@attrs.frozen
class SampleResult:
    """The output of a run.

    Attributes:
        samples: Final states ``(B, *event_shape)``.
        trajectory: ``(K + 1, B, *event_shape)`` when asked for, else None.
        stats: The run's :class:`~gaussspec.stats.SamplingStats`.
        memory: Final memory of kernels with memory, else None.
    """

    samples: torch.Tensor
    trajectory: torch.Tensor | None
    stats: SamplingStats
    memory: Any = None


# --- evaluation trees: a tensor or a (nested) tuple/list of tensors with a leading batch dim ---


def _tree_map(fn: Callable, tree, *rest):
    if isinstance(tree, torch.Tensor):
        return fn(tree, *rest)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_tree_map(fn, *parts) for parts in zip(tree, *rest))
    if isinstance(tree, dict):
        return {k: _tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    raise TypeError(
        f"an evaluation must be a tensor or a tuple/list/dict of tensors, got {type(tree).__name__}"
    )


def _check_finite(value: torch.Tensor, what: str, steps: torch.Tensor, chains: torch.Tensor):
    flat = value.reshape(value.shape[0], -1)
    if bool(torch.isfinite(flat.sum())):  # one reduction: NaN or inf anywhere poisons the sum
        return
    bad = ~torch.isfinite(flat).all(dim=1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise NonFiniteMeanError(
            f"{what} is NaN or inf at step t={int(steps[row])} for chain {int(chains[row])}; "
            "nothing is clipped: fix the kernel or reduce the step size"
        )


def _check_x0(kernel: GaussianKernel, x0: torch.Tensor, generator) -> None:
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if not x0.is_floating_point():
        raise TypeError(f"x0 must have a floating dtype, got {x0.dtype}")
    expected = tuple(kernel.event_shape)
    if x0.ndim != len(expected) + 1 or tuple(x0.shape[1:]) != expected:
        raise ValueError(
            f"x0 must have shape (num_chains, *event_shape) = (B, {', '.join(map(str, expected))}), "
            f"got {tuple(x0.shape)}"
        )


def _check_mean_shape(mean: torch.Tensor, expected: tuple, what: str, device=None) -> None:
    if not isinstance(mean, torch.Tensor):
        raise TypeError(f"{what} must return a torch.Tensor, got {type(mean).__name__}")
    if tuple(mean.shape) != expected:
        raise ValueError(f"{what} returned shape {tuple(mean.shape)}, expected {expected}")
    if device is not None and mean.device != device:
        raise ValueError(
            f"{what} returned a tensor on {mean.device} but the states are on {device}; "
            "keep the kernel and x0 on one device"
        )


class _Progress:
    """A minimal progress bar (tqdm when installed)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit="step", file=sys.stderr)
            except ImportError:  # pragma: no cover - tqdm is optional
                self.bar = None

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _settle(device: torch.device, stats: SamplingStats) -> None:
    """Wait for a CUDA device's queued work and count the wait as target time.

    Kernel calls on a GPU return once their work is queued; the wait for it comes at the next
    host read. Timed calls settle the device so that the time of the work they queued is counted
    as theirs, not as the engine's. A no-op on other devices.
    """
    if device.type == "cuda":
        tick = time.perf_counter()
        torch.cuda.synchronize(device)
        stats.target_time += time.perf_counter() - tick


def _gaussian_step(kernel: GaussianKernel, mean: torch.Tensor, t: torch.Tensor,
                   randomness: Randomness, chains: np.ndarray, stats: SamplingStats):
    """``mean + L_t xi`` with noise in the mean's dtype."""
    covariance = kernel.covariance(t)
    shape = covariance.noise_shape(tuple(kernel.event_shape))
    tick = time.perf_counter()
    noise = randomness.normal(chains, None, shape, mean.dtype)
    stats.noise_time += time.perf_counter() - tick
    return covariance.step(mean, noise, tuple(kernel.event_shape))  # m + L xi


def _plain_step(kernel: GaussianKernel, x: torch.Tensor, t: torch.Tensor, memory,
                randomness: Randomness, chain_ids: np.ndarray, chains: torch.Tensor,
                stats: SamplingStats):
    """One plain step ``x' = m(x, t) + L_t xi`` of every chain in ``x`` (one target call).

    Shared by :func:`sample_chain` and the adaptive sampler's plain bursts, so both make the same
    draws. Returns ``(x_next, memory_next, evaluation)``; the evaluation is the mean itself for a
    kernel that does not split ``evaluate``/``mean_from``.
    """
    name = f"{type(kernel).__name__} mean"
    tick = time.perf_counter()
    if kernel.splits_evaluation:
        evaluation = kernel.evaluate(x, t)
        stats.target_time += time.perf_counter() - tick
        tick = time.perf_counter()
        if kernel.has_memory:
            mean = kernel.mean_from(x, t, evaluation, memory)
        else:
            mean = kernel.mean_from(x, t, evaluation)
    else:
        evaluation = mean = kernel.mean(x, t)
    stats.target_time += time.perf_counter() - tick
    stats.target_evaluations += x.shape[0]
    _check_mean_shape(mean, tuple(x.shape), name, x.device)
    _check_finite(mean, name, t, chains)
    x_next = _gaussian_step(kernel, mean, t, randomness, chain_ids, stats)
    if kernel.has_memory:
        memory = kernel.next_memory(x, t, memory, evaluation, x_next)
    return x_next, memory, evaluation


def sample_chain(
    kernel: GaussianKernel,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
) -> SampleResult:
    """Run the plain sequential chain ``x_{t+1} = mean(x_t, t) + L_t xi_t``, the reference.

    Args:
        kernel: The kernel to run for ``kernel.num_steps`` steps.
        x0: Initial states ``(B, *event_shape)``.
        generator: Source of randomness on ``x0``'s device: one ``torch.Generator``, or a list
            with one per chain (each chain then depends on its own stream only).
        return_trajectory: Keep all ``K + 1`` states.
        progress: Show a progress bar.

    Returns:
        A :class:`SampleResult`; ``stats.rounds`` equals ``K``.
    """
    if not isinstance(kernel, GaussianKernel):
        raise TypeError(f"kernel must be a GaussianKernel, got {type(kernel).__name__}")
    _check_x0(kernel, x0, generator)
    return _finish(_plain_chain(kernel, x0, generator, return_trajectory, progress))


def _finish(run) -> SampleResult:
    """Drive a run's generator (``_Run.rounds``, ``_plain_chain``) to its end; its result."""
    while True:
        try:
            next(run)
        except StopIteration as end:
            return end.value


def _plain_chain(kernel: GaussianKernel, x0: torch.Tensor, generator, return_trajectory: bool,
                 progress: bool):
    """:func:`sample_chain` as a generator (inputs checked): yields the step reached after each
    step and returns the :class:`SampleResult`; time suspended at a ``yield`` is not counted."""
    randomness = Randomness(generator, x0.shape[0], x0.device)
    chain_ids = np.arange(x0.shape[0])
    start = time.perf_counter()
    num_chains, num_steps = x0.shape[0], kernel.num_steps
    stats = SamplingStats(num_chains=num_chains, num_steps=num_steps, draft_length=0)
    chains = torch.arange(num_chains, device=x0.device)
    x = x0.clone()
    memory = kernel.initial_memory(x) if kernel.has_memory else None
    trajectory = None
    if return_trajectory:
        trajectory = x0.new_empty((num_steps + 1, *x0.shape))
        trajectory[0] = x0
    bar = _Progress(num_steps, progress)
    for step in range(num_steps):
        t = torch.full((num_chains,), step, dtype=torch.int64, device=x0.device)
        x, memory, _ = _plain_step(kernel, x, t, memory, randomness, chain_ids, chains, stats)
        if trajectory is not None:
            trajectory[step + 1] = x
        stats.rounds += 1
        stats.sequential_target_calls += 1
        bar.update(1)
        suspended = time.perf_counter()
        yield step + 1
        start += time.perf_counter() - suspended  # another run's turn: not this run's time
    bar.close()
    _settle(x0.device, stats)  # the queued steps are the target calls' work (on a GPU)
    zeros = np.zeros(num_chains, dtype=np.int64)
    for _ in range(num_steps):
        stats.record_round(zeros, zeros)
    stats.wall_time = time.perf_counter() - start
    return SampleResult(samples=x, trajectory=trajectory, stats=stats, memory=memory)


def _validate_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, choices))}")
    return value


@attrs.frozen
class SpeculativeSampler:
    """Exact speculative sampling of a Gaussian Markov chain.

    Args:
        target: The expensive kernel whose chain law is reproduced exactly.
        drafter: A :class:`~gaussspec.drafters.Drafter`, or the name ``"frozen"`` or ``"free"``.
        draft_length: gamma, the number of draft steps per round (``>= 1``), or an
            :class:`~gaussspec.AdaptiveDraftLength` that picks it each round.
        verification: ``"block"`` (Sun et al. 2025; never fewer steps per round) or ``"token"``.
        coupling: ``"gamma"`` (the weighted residual) or ``"reflection"`` (token-wise only).
    """

    target: GaussianKernel = attrs.field()
    drafter: Drafter = attrs.field()
    draft_length: int = attrs.field(default=4)
    verification: str = attrs.field(default="block")
    coupling: str = attrs.field(default="gamma")

    @target.validator
    def _check_target(self, attribute, value):
        if not isinstance(value, GaussianKernel):
            raise TypeError(f"target must be a GaussianKernel, got {type(value).__name__}")
        if value.has_memory and not value.splits_evaluation:
            raise TypeError(
                "a target with memory must define evaluate(x, t) and mean_from(x, t, evaluation, "
                "memory) so that its memories along a drafted path are a cheap scan"
            )

    @drafter.validator
    def _check_drafter(self, attribute, value):
        if isinstance(value, str):
            _validate_choice(value, "drafter", tuple(DRAFTER_NAMES))
            value = DRAFTER_NAMES[value]()
            object.__setattr__(self, "drafter", value)
        if not isinstance(value, Drafter):
            raise TypeError(
                "drafter must be KernelDrafter(kernel), FrozenDrafter(), FreeDrafter() or one of "
                f"the names {tuple(DRAFTER_NAMES)}; got {type(value).__name__}"
            )
        value.check(self.target)

    @draft_length.validator
    def _check_draft_length(self, attribute, value):
        if isinstance(value, AdaptiveDraftLength):
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"draft_length must be an integer >= 1 or gaussspec.AdaptiveDraftLength(...), "
                f"got {value!r}"
            )

    @verification.validator
    def _check_verification(self, attribute, value):
        _validate_choice(value, "verification", VERIFICATIONS)

    @coupling.validator
    def _check_coupling(self, attribute, value):
        _validate_choice(value, "coupling", COUPLINGS)
        if value == "reflection" and self.verification != "token":
            raise ValueError(
                "coupling='reflection' is exact only with verification='token' (block "
                "verification needs the weighted residual, coupling='gamma')"
            )

    def sample(
        self,
        x0: torch.Tensor,
        generator=None,
        return_trajectory: bool = False,
        progress: bool = False,
        checkpoint: Checkpointing | None = None,
    ) -> SampleResult:
        """Run all chains from ``x0`` to step ``num_steps``; the output has the target chain's law.

        Args:
            x0: Initial states ``(B, *event_shape)``.
            generator: Source of all randomness on ``x0``'s device: one ``torch.Generator``, or
                a list with one per chain (see :func:`gaussspec.chain_generators`).
            return_trajectory: Keep all ``K + 1`` states of every chain.
            progress: Show a progress bar over chain-steps.
            checkpoint: Save the run every few rounds (and stream its trajectory) so that
                :meth:`resume` can finish it after a crash with exactly the same output.
        """
        _check_x0(self.target, x0, None)
        if checkpoint is not None and not isinstance(checkpoint, Checkpointing):
            raise TypeError(f"checkpoint must be a gaussspec.Checkpointing, got {type(checkpoint).__name__}")
        return _Run(self, x0, generator, return_trajectory, progress, checkpoint).run()

    def _rounds(self, x0: torch.Tensor, generator=None):
        """:meth:`sample` as a generator (``_Run.rounds``), the run set up at the first ``next``:
        benchmarks interleave runs round by round (``benchmarking.harness``)."""
        _check_x0(self.target, x0, None)
        run = yield from _Run(self, x0, generator, False, False).rounds()
        return run

    def resume(
        self,
        checkpoint: Checkpointing,
        generator=None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SampleResult:
        """Finish a run from its last checkpoint; the output equals the uninterrupted run's.

        Args:
            checkpoint: The same :class:`Checkpointing` the run was started with.
            generator: Generators of the same kind (one, or one per chain) and device as the
                original run; their states are restored from the checkpoint.
            return_trajectory: Return the trajectory (needs a streamed ``trajectory_path`` with
                ``thin = 1``, since states before the checkpoint are on disk only).
            progress: Show a progress bar.
        """
        if not isinstance(checkpoint, Checkpointing):
            raise TypeError(f"checkpoint must be a gaussspec.Checkpointing, got {type(checkpoint).__name__}")
        device = generator.device if isinstance(generator, torch.Generator) else (
            generator[0].device if generator else torch.device("cpu"))
        restored = load_checkpoint(checkpoint.path, device)
        run = _Run(self, restored[0]["x"], generator, False, progress, checkpoint, restored)
        result = run.run()
        if return_trajectory:
            if checkpoint.trajectory_path is None or checkpoint.thin != 1:
                raise ValueError(
                    "a resumed run can return its trajectory only from a streamed "
                    "trajectory_path with thin=1"
                )
            trajectory = torch.from_numpy(np.asarray(run.stream)).to(result.samples.device)
            result = attrs.evolve(result, trajectory=trajectory)
        return result


class _DraftMeans:
    """A round's draft means, ``(n, width, *event)``, stored into their grid only when asked for.

    The compiled CPU path reads the draft means off the drafted states (``m_p = x' - std xi``),
    so the common round never copies them; the general path and error reports call :meth:`grid`.
    """

    __slots__ = ("_grid", "_full")

    def __init__(self, grid: torch.Tensor, full: list[torch.Tensor]):
        self._grid, self._full = grid, full  # full[i]: every chain's mean at position i + 1

    def grid(self) -> torch.Tensor:
        if self._full:
            full, self._full = self._full, []
            if len(full) == self._grid.shape[1] and all(m.dtype == self._grid.dtype for m in full):
                torch.stack(full, dim=1, out=self._grid)
            else:
                for i, mean in enumerate(full):
                    self._grid[:, i].copy_(mean)
        return self._grid


class _Run:
    """State of one speculative run (all tensors batched over chains)."""

    def __init__(self, sampler: SpeculativeSampler, x0, generator, return_trajectory, progress,
                 checkpoint=None, restored=None):
        self.target = sampler.target
        self.drafter = sampler.drafter
        self.draft_kernel = sampler.drafter.kernel(sampler.target)
        self.adaptive = None
        if isinstance(sampler.draft_length, AdaptiveDraftLength):
            self.adaptive = sampler.draft_length.start(x0.shape[0])
            self.gamma = sampler.draft_length.max_draft_length
        else:
            self.gamma = int(sampler.draft_length)
        self.verification = sampler.verification
        self.coupling = sampler.coupling
        self.random = Randomness(generator, x0.shape[0], x0.device)
        self.event_shape = tuple(self.target.event_shape)
        self.num_steps = self.target.num_steps
        self.device = x0.device
        self.on_cpu = self.device.type == "cpu"
        self.dtype = x0.dtype
        self.range_rtol = range_tolerance(x0.dtype)
        self.x = x0.clone()
        self.num_chains = x0.shape[0]
        self.t_host = np.zeros(self.num_chains, dtype=np.int64)  # each chain's step (host)
        self.chain_ids = torch.arange(self.num_chains, device=self.device)
        self.memory = self.target.initial_memory(self.x) if self.target.has_memory else None
        self.cache = None  # FreeDrafter: target evaluation at each chain's parent state
        self.prefetched = None  # (chains, noise): the next round's draft noise, drawn early
        self.drafting_started = 0.0  # when the last round's drafting loop began (G4's d)
        self.pending_stats: list[tuple[np.ndarray, np.ndarray]] = []
        self.noise_shape = tuple(self.target.covariance(
            torch.zeros(1, dtype=torch.int64, device=self.device)).noise_shape(self.event_shape))
        self.buffers: dict = {}  # round grids reused across rounds (and their views by shape)
        self.grid_index: dict[tuple[int, int], np.ndarray] = {}  # flat row of each grid slot
        self.positions = np.arange(self.gamma + 1)
        self.step_grids: dict[tuple[int, int], tuple] = {}  # CPU step grids (and views) per shape
        self.slot = None  # (slot 0, path grid) where the compiled step writes the next states
        self.fallback_rounds = 0  # rounds drafted again so (a warning names the first)
        self.full_lengths: dict[int, np.ndarray] = {}  # draft lengths when every chain drafts g
        self.fused_verification = (self.on_cpu  # compiled CPU paths (until a round says no)
                                   and self.dtype in (torch.float32, torch.float64))
        self.std_grids: dict[tuple, np.ndarray] = {}  # constant std grids, by (std, n, columns)
        self.shared_whitening = None  # (a covariance, itself if it has a shared inverse)
        self.cache_buffers: dict[tuple, list[torch.Tensor]] = {}  # two free-drafter caches per shape
        self.noise_buffers: dict[tuple, list] = {}  # two draft-noise buffers per shape
        self.noise_columns: dict[tuple, tuple] = {}  # their per-position views
        self.current_noise = None  # the draft noise of the round in progress
        self.has_cache = np.zeros(self.num_chains, dtype=bool)
        self.all_cached = False  # every chain has a free-drafter cache (then has_cache is all True)
        self.trajectory = None
        if return_trajectory:
            self.trajectory = x0.new_empty((self.num_steps + 1, *x0.shape))
            self.trajectory[0] = x0
        self.stats = SamplingStats(
            num_chains=self.num_chains, num_steps=self.num_steps, draft_length=self.gamma
        )
        self.bar = _Progress(self.num_chains * self.num_steps, progress)
        self.checkpoint, self.stream = checkpoint, None
        self.settings = {
            "target": type(self.target).__name__, "drafter": self.drafter.source,
            "draft_length": self.gamma, "verification": self.verification,
            "coupling": self.coupling, "num_chains": self.num_chains,
            "num_steps": self.num_steps, "event_shape": list(self.event_shape),
            "dtype": str(self.dtype),
        }
        if checkpoint is not None and checkpoint.trajectory_path is not None:
            rows = self.num_steps // checkpoint.thin + 1
            self.stream = open_trajectory(checkpoint.trajectory_path,
                                          (rows, self.num_chains, *self.event_shape),
                                          self.dtype, create=restored is None)
            if restored is None:
                self.stream[0] = x0.detach().cpu().numpy()
        if restored is not None:
            self._restore(*restored)

    # -- checkpoints ----------------------------------------------------------------------------

    def _restore(self, tensors, cache, memory, random_states, meta):
        for key, value in self.settings.items():
            if key != "target" and meta["settings"].get(key) != value:  # a renamed class is fine
                raise ValueError(
                    f"checkpoint was written with {key}={meta['settings'].get(key)!r}, this "
                    f"sampler has {value!r}"
                )
        self.x = tensors["x"].to(self.dtype)
        self.t_host = tensors["t"].cpu().numpy().astype(np.int64)
        if "prefetched_noise" in tensors:
            self.prefetched = (tensors["prefetched_chains"].cpu().numpy(),
                               tensors["prefetched_noise"].to(self.dtype))
        self.memory, self.cache = memory, cache
        self.has_cache = tensors["has_cache"].cpu().numpy().astype(bool)
        self.stats = SamplingStats(**meta["stats"])
        self.random.set_state(random_states)
        self.bar.update(int(self.t_host.sum()))

    def _prefetched_tensors(self) -> dict:
        if self.prefetched is None:
            return {}
        chains, noise = self.prefetched
        return {"prefetched_chains": torch.as_tensor(chains), "prefetched_noise": noise}

    def _save(self):
        self._fold_stats()
        self.stats.wall_time = self.elapsed + time.perf_counter() - self.started
        if self.stream is not None:
            self.stream.flush()
        save_checkpoint(
            self.checkpoint.path,
            {"x": self.x, "t": torch.as_tensor(self.t_host), "has_cache": torch.as_tensor(self.has_cache),
             **self._prefetched_tensors()},
            self.cache, self.memory, self.random.get_state(),
            {"settings": self.settings, "stats": attrs.asdict(self.stats)},
        )

    def _record(self, steps: torch.Tensor, chains: torch.Tensor, states: torch.Tensor) -> None:
        """Store states at (step, chain) in the trajectory and the streamed file."""
        if self.trajectory is not None:
            self.trajectory[steps, chains] = states
        if self.stream is not None:
            thin = self.checkpoint.thin
            keep = (steps % thin) == 0
            if bool(keep.any()):
                rows = (steps[keep] // thin).cpu().numpy()
                self.stream[rows, chains[keep].cpu().numpy()] = states[keep].detach().cpu().numpy()

    # -- kernel calls, timed ------------------------------------------------------------------

    def _target_evaluate(self, x, t):
        tick = time.perf_counter()
        if self.target.splits_evaluation:
            out = self.target.evaluate(x, t)
        else:
            out = self.target.mean(x, t)  # the evaluation is the mean itself
        self.stats.target_time += time.perf_counter() - tick
        _settle(self.device, self.stats)  # a host read of the results follows anyway
        self.stats.target_evaluations += x.shape[0]
        return out

    def _target_mean(self, x, t, evaluation, memory):
        if not self.target.splits_evaluation:
            return evaluation
        tick = time.perf_counter()
        if self.target.has_memory:
            mean = self.target.mean_from(x, t, evaluation, memory)
        else:
            mean = self.target.mean_from(x, t, evaluation)
        self.stats.target_time += time.perf_counter() - tick  # a target kernel call too
        _settle(self.device, self.stats)
        return mean

    def _draft_mean(self, x, t, memory, stale):
        """Draft mean at (x, t) and the evaluation its memory update needs."""
        tick = time.perf_counter()
        kernel = self.draft_kernel
        if self.drafter.source == "kernel":
            if kernel.has_memory:
                evaluation = kernel.evaluate(x, t)
                mean = kernel.mean_from(x, t, evaluation, memory)
            else:
                evaluation = None
                mean = kernel.mean(x, t)
        else:
            evaluation = stale
            if kernel.has_memory:
                mean = kernel.mean_from(x, t, stale, memory)
            else:
                mean = kernel.mean_from(x, t, stale)
        self.stats.draft_time += time.perf_counter() - tick
        return mean, evaluation

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> SampleResult:
        return _finish(self.rounds())

    def rounds(self):
        """The run as a generator: yields the step every chain has reached after each round or
        plain burst, and returns the :class:`SampleResult`.

        Time spent suspended at a ``yield`` (another run's turn, when a benchmark interleaves
        runs) counts in neither the run's wall time nor the adaptive policy's clock, and a
        numba compilation made meanwhile does not leave this run's next round untimed.
        """
        self.started, self.elapsed = time.perf_counter(), self.stats.wall_time
        self.mark = self.started  # the end of the adaptive policy's last update
        self.mark_compilations = compilations()  # numba compilations finished by then
        all_ids = np.arange(self.num_chains)
        while True:
            latest = int(self.t_host.max())  # host mirror of t: no sync
            if latest < self.num_steps:  # every chain still runs
                active = all_ids
            else:
                active = np.nonzero(self.t_host < self.num_steps)[0]
                if len(active) == 0:
                    break
            if self.adaptive is None or not self._adaptive_plain(active, latest):  # else: plain
                self._round(active, latest)  # steps were the adaptive policy's action
                if self.checkpoint is not None and (
                        self.stats.rounds % self.checkpoint.every_rounds == 0):
                    self._save()
            suspended, compiled = time.perf_counter(), compilations()
            yield int(self.t_host.min())
            paused = time.perf_counter() - suspended  # another run's turn: not this run's time
            self.started += paused
            self.mark += paused
            self.mark_compilations += compilations() - compiled
        self.bar.close()
        self._fold_stats()
        if self.checkpoint is not None:
            self._save()
        self.stats.wall_time = self.elapsed + time.perf_counter() - self.started
        if self.slot is not None and self.x is self.slot[0]:
            self.x = self.x.clone()  # the final states, not a view into a round's grid
        return SampleResult(self.x, self.trajectory, self.stats, self.memory)

    def _adaptive_plain(self, active_np: np.ndarray, latest: int) -> bool:
        """Ask the adaptive policy for the next action; run its plain burst if it picks g = 0.

        ``latest`` is the largest step of any chain. Returns:
            True if plain steps were taken, False if the next action is a speculative round
            (its draft length is left in ``self.round_gamma``).
        """
        all_chains = len(active_np) == self.num_chains
        t_active = self.t_host if all_chains else self.t_host[active_np]
        if self.drafter.source == "free" and not (
                self.all_cached or self.has_cache[active_np].all()):
            gamma, burst = 0, 1  # a free drafter has nothing to draft from yet: one plain step
        else:
            remaining = self.num_steps - latest  # fewest steps left: enough far from the end
            if remaining <= self.gamma + 1:  # the draft length may be capped: the most left
                remaining = self.num_steps - int(t_active.min())
            gamma, burst = self.adaptive.choose(len(active_np), self.drafter.source == "frozen",
                                                remaining)
            if gamma < 0 or (gamma == 0 and burst < 1):
                raise ValueError(
                    f"the adaptive policy chose (g, burst) = ({gamma}, {burst}); an action is a "
                    "draft length g >= 1, or g = 0 with a burst of at least one plain step")
        if gamma > 0:
            self.round_gamma = gamma
            return False
        burst = min(burst, self.num_steps - int(t_active.max()))
        if self.checkpoint is not None:  # stop at the next checkpoint's round
            every = self.checkpoint.every_rounds
            burst = min(burst, every - self.stats.rounds % every)
        self._plain_steps(active_np, burst)
        return True

    def _plain_steps(self, chains_np: np.ndarray, count: int) -> None:
        """``count`` plain target steps ``x' = m_q(x, t) + L_t xi`` of these chains, one call each.

        Every chain must have ``count`` steps left. Keeps the kernel memory, the free drafter's
        cache (the target evaluation at the parent state), the stats, trajectory and progress
        as speculative rounds do, and reports the burst's costs to the adaptive policy.
        """
        target_before = self.stats.target_time
        n = len(chains_np)
        all_chains = n == self.num_chains
        chains = self.chain_ids if all_chains else self._device_index(chains_np)
        x = self.x if all_chains else self.x[chains]
        t = self._device_index(self.t_host[chains_np])
        memory = None
        if self.memory is not None:
            memory = self.memory if all_chains else self.memory[chains]
        for _ in range(count):
            x, memory, evaluation = _plain_step(self.target, x, t, memory, self.random,
                                                chains_np, chains, self.stats)
            t = t + 1
            if self.trajectory is not None or self.stream is not None:
                self._record(t, chains, x)
        if all_chains:
            self.x = x
            if memory is not None:
                self.memory = memory
        else:
            self.x[chains] = x
            if memory is not None:
                self.memory[chains] = memory
        self.t_host[chains_np] += count
        if self.drafter.source == "free":  # the evaluation at the new states' parents
            if all_chains:
                self.cache = evaluation
            else:
                if self.cache is None:
                    self.cache = _tree_map(
                        lambda e: e.new_zeros((self.num_chains, *e.shape[1:])), evaluation)
                _tree_map(lambda c, e: c.__setitem__(chains, e), self.cache, evaluation)
            self.has_cache[chains_np] = True
        _settle(self.device, self.stats)  # the burst's queued calls, before it is priced
        self.stats.rounds += count
        self.stats.sequential_target_calls += count
        zeros = np.zeros(n * count, dtype=np.int64)  # one call with every (chain, step) entry
        self.stats.record_round(zeros, zeros)
        if self.bar.bar is not None:
            self.bar.update(n * count)
        self.adaptive.update_plain(n, count, self.stats.target_time - target_before,
                                   time.perf_counter() - self.mark,
                                   timed=compilations() == self.mark_compilations)
        self.mark, self.mark_compilations = time.perf_counter(), compilations()

    def _fold_stats(self) -> None:
        """Add the rounds' accepted and drafted lengths to ``stats`` (one call for many rounds)."""
        if self.pending_stats:
            accepted, drafted = zip(*self.pending_stats)
            drafted = np.concatenate(drafted)
            self.stats.record_round(np.concatenate(accepted), drafted)
            self.stats.draft_evaluations += int(drafted.sum())  # every drafted state, one draft mean
            self.pending_stats = []

    def _rows(self, lengths: np.ndarray, at_least: int):
        """Chains drafting position ``at_least``: a slice when all do (no gather), else indices."""
        if lengths.min() >= at_least:
            return slice(None), len(lengths)
        rows = np.nonzero(lengths >= at_least)[0]
        return torch.as_tensor(rows, device=self.device), len(rows)

    def _pairs(self, lengths: np.ndarray, first: int, last_offset: int = 0):
        """(row, position) pairs with ``first <= position <= length + last_offset``, row-major."""
        width = int(lengths.max()) if len(lengths) else 0
        positions = np.arange(first, width + 1 + last_offset)
        valid = positions[None, :] <= (lengths[:, None] + last_offset)
        rows, cols = np.nonzero(valid)
        return rows, positions[cols]

    def _device_index(self, array: np.ndarray) -> torch.Tensor:
        if self.on_cpu:
            return torch.from_numpy(np.ascontiguousarray(array))  # shares the host memory
        return torch.as_tensor(np.ascontiguousarray(array), device=self.device)

    def _draft(self, x0, t0_host, memory0, stale, lengths, width, shortest, chains_np,
               noises=None):
        """Draft up to ``lengths[b]`` steps per chain: the padded ``(n, width + 1)`` path grid.

        Returns ``(path, draft_means, noises, steps, covariance)``; ``path[:, 0] = x0`` and
        ``path[:, i] = m_p(path[:, i - 1]) + L xi_i`` where chain ``b`` drafts ``i <= lengths[b]``
        (the rest is zero padding), the draft means (a :class:`_DraftMeans`, None when nothing is
        drafted), ``steps[b, i] = t0[b] + min(i, lengths[b])`` on the states' device, and the
        target's covariance at every slot of ``steps`` (flattened).

        ``noises`` given (the round drafted again after a draft mean was not finite): those
        noises, and ``m_p(x) := x`` wherever the draft's mean is not finite (the draft kernel
        everywhere: it is ``m_p`` wherever that is defined, so the first drafting's path up to
        there is drawn again unchanged).
        """
        target, shape, n = self.target, self.event_shape, len(lengths)
        zero = shortest < width  # padding stays finite
        path = self._path_grid(x0, (n, width + 1, *shape), zero)
        steps, steps_at = self._steps(t0_host, lengths, width, zero)
        grid_covariance = target.covariance(steps.reshape(-1))
        if width == 0:
            self.drafting_started = time.perf_counter()  # no drafting loop
            return path, None, None, steps, grid_covariance
        # one std for every slot (L = std I): no covariance call per position
        scalar = grid_covariance._scalar if isinstance(grid_covariance, IsotropicCovariance) else None
        draft_means = self._grid("draft_means", (n, width, *shape), zero)
        fallback = noises is not None  # m_p := x where the draft's mean is not finite
        if not fallback:
            noises = self._draft_noise(chains_np, lengths, steps)
        draft_memory = None
        if self.draft_kernel.has_memory:
            draft_memory = memory0.new_empty((n, width + 1, *memory0.shape[1:]))
            draft_memory[:, 0] = memory0
        path_at = self._columns("path", path)  # per-position views
        noise_at = self._noise_columns(noises)
        terms = None  # L xi of every slot in one call (not one a step), where L allows it
        if scalar is None and draft_memory is None and not grid_covariance.row_matrices():
            slots = target.covariance(steps[:, :width].reshape(-1))  # slot (b, i - 1): t_prev
            terms = slots.apply(noises.reshape(n * width, *noises.shape[2:]), shape).reshape(
                n, width, *shape).to(self.dtype)  # one call a round, not one a step
            term_at = terms.unbind(1)
        full_means = []  # draft means of the positions every chain drafts (stored when asked)
        # the loop's time is the adaptive policy's per-step drafting cost d: the set-up above is
        # the same at any width and counts in the rest of the round (o0, G4)
        self.drafting_started = time.perf_counter()
        for i in range(1, width + 1):
            every = i <= shortest  # every chain drafts position i: plain views, no gathers
            if every:
                rows, x_prev, t_prev, rows_stale = slice(None), path_at[i - 1], steps_at[i - 1], stale
            else:
                rows = self._rows(lengths, i)[0]
                x_prev, t_prev = path[rows, i - 1], steps[rows, i - 1]
                rows_stale = None if stale is None else _tree_map(lambda s: s[rows], stale)
            mem_prev = draft_memory[rows, i - 1] if draft_memory is not None else None
            mean, evaluation = self._draft_mean(x_prev, t_prev, mem_prev, rows_stale)
            if mean.shape != x_prev.shape or mean.device != x_prev.device:
                _check_mean_shape(mean, tuple(x_prev.shape), "draft mean", x_prev.device)
            if fallback:  # m_p := x where m_p is not finite: a proper Gaussian draft there
                defined = torch.isfinite(mean.reshape(mean.shape[0], -1)).all(dim=1)
                mean = torch.where(defined.view(-1, *[1] * (mean.ndim - 1)), mean,
                                   x_prev.to(mean.dtype))
            if every and scalar is not None and draft_memory is None:  # no temporaries
                full_means.append(mean)
                torch.add(mean, noise_at[i - 1], alpha=scalar, out=path_at[i])  # m_p + std xi
                continue
            if terms is not None:
                if every:
                    full_means.append(mean)
                    torch.add(mean, term_at[i - 1], out=path_at[i])  # m_p + L xi
                else:
                    draft_means[rows, i - 1] = mean
                    path[rows, i] = mean + terms[rows, i - 1]  # m_p + L xi
                continue
            covariance = target.covariance(t_prev)
            if every:
                full_means.append(mean)
                path_at[i].copy_(covariance.step(mean, noise_at[i - 1], shape))  # m_p + L xi
            else:
                draft_means[rows, i - 1] = mean
                path[rows, i] = covariance.step(mean, noises[rows, i - 1], shape)  # m_p + L xi
            if draft_memory is not None:
                draft_memory[rows, i] = self.draft_kernel.next_memory(
                    x_prev, t_prev, mem_prev, evaluation, path[rows, i]
                )
        return path, _DraftMeans(draft_means, full_means), noises, steps, grid_covariance

    def _path_grid(self, x0: torch.Tensor, shape: tuple, zero: bool) -> torch.Tensor:
        """The round's path grid (a :meth:`_grid` view) with ``x0`` in slot 0.

        The compiled step writes the next states into slot 0 of its grid, ``self.slot = (slot 0,
        grid)``, and ``self.x`` is that slot: a next round of the same shape drafts from there
        without a copy. Otherwise current states living in a grid are moved out first (the grid
        is about to be rewritten).
        """
        if self.slot is not None and self.x is self.slot[0]:
            grid = self.slot[1]
            if not zero and x0 is self.x and tuple(grid.shape) == shape:
                return grid  # slot 0 holds the current states already
            moved = self.x.clone()
            x0 = moved if x0 is self.x else x0
            self.x = moved
        self.slot = None
        path = self._grid("path", shape, zero)
        path[:, 0] = x0
        return path

    def _steps(self, t0_host: np.ndarray, lengths: np.ndarray, width: int, ragged: bool):
        """``steps[b, i] = t0[b] + min(i, lengths[b])`` and its columns (``steps.unbind(1)``).

        Padding repeats a chain's last drafted step (a valid index). On the CPU the grid is a
        buffer kept across rounds with its views (one numpy call a round); kernels must not keep
        the ``t`` they are given beyond the call.
        """
        positions = self.positions[: width + 1]
        offsets = np.minimum(positions, lengths[:, None]) if ragged else positions
        if not self.on_cpu:
            steps = self._device_index(t0_host[:, None] + offsets)
            return steps, steps.unbind(1)
        key = (len(lengths), width)
        grid = self.step_grids.get(key)
        if grid is None:
            host = np.empty(key[0] * (width + 1), dtype=np.int64).reshape(key[0], width + 1)
            steps = torch.from_numpy(host)
            grid = self.step_grids[key] = (host, steps, steps.unbind(1))
        np.add(t0_host[:, None], offsets, out=grid[0])
        return grid[1], grid[2]

    def _full_lengths(self, gamma: int) -> np.ndarray:
        """Every chain's draft length when all draft ``gamma`` (kept; callers must not write it)."""
        lengths = self.full_lengths.get(gamma)
        if lengths is None:
            lengths = self.full_lengths[gamma] = np.full(self.num_chains, gamma, dtype=np.int64)
        return lengths

    def _grid(self, name: str, shape: tuple, zero: bool) -> torch.Tensor:
        """A contiguous ``shape`` view of a buffer kept across rounds (no allocation, no page
        faults on the hot path); nothing that outlives the round may alias it."""
        view = self.buffers.get((name, shape))
        if view is None:
            size = math.prod(shape)
            buffer = self.buffers.get(name)
            if buffer is None or buffer.numel() < size:
                buffer = torch.empty(size, dtype=self.dtype, device=self.device)
                self.buffers = {name: buffer, **{k: v for k, v in self.buffers.items()
                                                 if isinstance(k, str) and k != name}}
            view = self.buffers[(name, shape)] = buffer[:size].view(shape)
        return view.zero_() if zero else view

    def _columns(self, name: str, view: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``view.unbind(1)`` of a :meth:`_grid` view, kept with it across rounds."""
        key = (name + ".columns", tuple(view.shape))
        columns = self.buffers.get(key)
        if columns is None or columns[0].data_ptr() != view.data_ptr():
            columns = self.buffers[key] = view.unbind(1)
        return columns

    def _noise_columns(self, noises: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``noises.unbind(1)``; kept for the draft-noise buffers (their views stay valid)."""
        columns = self.noise_columns.get((noises.data_ptr(), tuple(noises.shape)))
        return noises.unbind(1) if columns is None else columns

    def _noise_buffer(self, shape: tuple) -> torch.Tensor:
        """A kept buffer for the next round's draft noise: never the one this round drafts with."""
        def make():
            buffer = torch.empty(shape, dtype=self.dtype)
            self.noise_columns[(buffer.data_ptr(), shape)] = buffer.unbind(1)
            return buffer

        return self._spare(self.noise_buffers, shape, make, self.current_noise)[0]

    def _host(self, name: str, view: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Host arrays of a CPU :meth:`_grid` view, kept with it: ``(rows, columns, features)``
        and its column 0, ``(rows, features)``."""
        key = (name + ".host", tuple(view.shape))
        kept = self.buffers.get(key)
        if kept is None or kept[0] != view.data_ptr():
            host = host_grid(view, view.shape[0], view.shape[1])
            kept = self.buffers[key] = (view.data_ptr(), host, host[:, 0])
        return kept[1], kept[2]

    def _draft_noise(self, chains_np, lengths, steps):
        """This round's draft noise ``(n, width, *noise)``, from the previous round's prefetch.

        Every round draws the next round's noise (its own draft length of positions for each of
        its chains) in the background while its target call runs; chains that finished or draft
        fewer positions leave draws unused, which keeps the draws independent of everything they
        are combined with. The first round draws in the foreground, and so does an adaptive round
        for the positions beyond the previous round's length.
        """
        width = steps.shape[1] - 1
        if self.prefetched is not None:
            prefetched_chains, block = self.prefetched
            self.prefetched = None
            if len(prefetched_chains) != len(chains_np):  # chains only finish: same count, same set
                block = block[self._device_index(np.searchsorted(prefetched_chains, chains_np))]
            if block.shape[1] < width:  # an adaptive round drafting further than the last one
                tick = time.perf_counter()
                extra = self.random.normal(chains_np, np.maximum(lengths - block.shape[1], 0),
                                           self.noise_shape, self.dtype)
                self.stats.noise_time += time.perf_counter() - tick
                block = torch.cat([block, extra[:, : width - block.shape[1]]], dim=1)
            if block.shape[1] == width:
                return block
            # a copy into a kept grid (the block's buffer takes the next draws), columns kept
            noises = self._grid("noise", (len(lengths), width, *self.noise_shape), False)
            noises.copy_(block[:, :width])
            key = (noises.data_ptr(), tuple(noises.shape))
            if key not in self.noise_columns:
                self.noise_columns[key] = self._columns("noise", noises)
            return noises
        tick = time.perf_counter()
        counts = lengths if self.adaptive is not None else np.full(len(lengths), self.gamma)
        noises = self.random.normal(chains_np, counts, self.noise_shape, self.dtype)[:, :width]
        self.stats.noise_time += time.perf_counter() - tick
        return noises if noises.is_contiguous() else noises.contiguous()

    def _round_draws(self, chains_np, lengths, next_width: int, next_out):
        """The round's draws (:meth:`Randomness.round_draws`): started in the background to
        overlap the target call, or made here when few; their time here counts as noise time."""
        tick = time.perf_counter()
        draws = self.random.round_draws(chains_np, lengths, self.noise_shape, self.dtype,
                                        next_width, next_out)
        self.stats.noise_time += time.perf_counter() - tick
        return draws

    def _verify_target(self, path, steps, lengths, full, stale, memory0, start_draws):
        """ONE batched target call on the drafted states, and the target means along each path.

        ``start_draws()`` is called right before the call (so that the background draws it starts
        overlap the call rather than this method's own Python work); its result is returned last.

        Returns ``(means, evaluations, flat_index, target_memory, draws)``: ``means`` is the
        ``(n, width + 1, *event)`` grid of target means (padding slots hold copies),
        ``evaluations`` the call's output in its flat layout, ``flat_index[b, i]`` the flat row of
        grid slot ``(b, i)`` (host array), the target's memories along the paths (kernels with
        memory, else None) and what ``start_draws()`` returned.
        """
        target, shape, n = self.target, self.event_shape, len(lengths)
        width = path.shape[1] - 1
        frozen = self.drafter.source == "frozen"
        if full and not frozen:  # every chain drafts fully: the flat layout is the grid itself
            flat_index = self.grid_index.get((n, width))
            if flat_index is None:
                flat_index = self.grid_index[(n, width)] = np.arange(n * (width + 1)).reshape(
                    n, width + 1)
            flat_states, flat_steps = path.reshape(-1, *shape), steps.reshape(-1)
            draws = start_draws()
            evaluations = self._target_evaluate(flat_states, flat_steps)
        else:  # valid slots only; the frozen drafter's position-0 evaluation comes first
            rows, positions = self._pairs(lengths, 0)
            if frozen:
                order = np.argsort(positions != 0, kind="stable")
                rows, positions = rows[order], positions[order]
            flat_index = np.zeros((n, width + 1), dtype=np.int64)
            flat_index[rows, positions] = np.arange(len(rows))
            rows_t, positions_t = self._device_index(rows), self._device_index(positions)
            flat_states, flat_steps = path[rows_t, positions_t], steps[rows_t, positions_t]
            if frozen:
                draws = start_draws()
                later = (self._target_evaluate(flat_states[n:], flat_steps[n:])
                         if len(rows) > n else None)
                evaluations = stale if later is None else _tree_map(
                    lambda a, b: torch.cat([a, b]), stale, later)
            else:
                draws = start_draws()
                evaluations = self._target_evaluate(flat_states, flat_steps)
        self.stats.rounds += 1
        self.stats.sequential_target_calls += 1
        if target.has_memory:
            return (*self._target_scan(path, steps, lengths, evaluations, flat_index, memory0),
                    draws)
        flat_means = self._target_mean(flat_states, flat_steps, evaluations, None)
        if (not isinstance(flat_means, torch.Tensor) or flat_means.shape != flat_states.shape
                or flat_means.device != flat_states.device):
            _check_mean_shape(flat_means, (flat_states.shape[0], *shape),
                              f"{type(target).__name__} mean", flat_states.device)
        if full and not frozen:
            means = flat_means.view(n, width + 1, *shape)
        else:
            means = flat_means[self._device_index(flat_index)]
        return means, evaluations, flat_index, None, draws

    def _target_scan(self, path, steps, lengths, evaluations, flat_index, memory0):
        """Target means and memories along each drafted path by a cheap scan (ALGORITHMS 7)."""
        target, n, width = self.target, len(lengths), path.shape[1] - 1
        tick = time.perf_counter()
        means = path.new_zeros(path.shape)
        memory = memory0.new_empty((n, width + 1, *memory0.shape[1:]))
        memory[:, 0] = memory0
        for i in range(width + 1):
            rows_np = np.nonzero(lengths >= i)[0]
            rows = self._device_index(rows_np)
            x_i, t_i = path[rows, i], steps[rows, i]
            e_i = _tree_map(lambda e: e[self._device_index(flat_index[rows_np, i])], evaluations)
            means[rows, i] = target.mean_from(x_i, t_i, e_i, memory[rows, i])
            if i < width:
                next_np = np.nonzero(lengths[rows_np] >= i + 1)[0]
                nxt, rows_next = self._device_index(next_np), self._device_index(rows_np[next_np])
                memory[rows_next, i + 1] = target.next_memory(
                    x_i[nxt], t_i[nxt], memory[rows_next, i],
                    _tree_map(lambda e: e[nxt], e_i), path[rows_next, i + 1],
                )
        self.stats.target_time += time.perf_counter() - tick
        _settle(self.device, self.stats)
        return means, evaluations, flat_index, memory

    def _check_grid(self, means, draft_means, steps, lengths, chains_np, last_offset):
        """Raise :class:`NonFiniteMeanError` naming the first non-finite mean among valid slots."""
        rows, positions = self._pairs(lengths, 0, last_offset)
        at = (self._device_index(rows), self._device_index(positions))
        if isinstance(draft_means, _DraftMeans):
            draft_means = draft_means.grid()
        if draft_means is not None and len(rows):
            drafted = positions < lengths[rows]
            d_at = (self._device_index(rows[drafted]), self._device_index(positions[drafted]))
            _check_finite(draft_means[d_at], "draft mean", steps[d_at],
                          self._device_index(chains_np[rows[drafted]]))
        _check_finite(means[at], f"{type(self.target).__name__} mean", steps[at],
                      self._device_index(chains_np[rows]))

    def _compiled_inputs(self, covariance, path, noises, steps, lengths):
        """What the compiled CPU path needs besides the target means, made before the target call.

        Everything here depends on the drafts only, so it runs while the caches are warm rather
        than after the call (which streams the kernel's weights through them).

        Returns ``(std, path, noise, new_x, out, whitening)``: the ``(n, width + 1)`` std of the
        step leaving each slot, host views of the drafted paths and the noise, the tensor the next
        states go to and its host view, and None; or None when the covariance is neither
        isotropic nor one invertible factor shared by every slot. The next states go to the
        path's slot 0 (only later slots are read when they are written), where the next round of
        the same shape drafts from them without a copy. For a shared dense ``L`` (float64 states)
        or a positive diagonal the round runs in whitened coordinates
        (:meth:`_shared_whitening`): std 1, the path ``L^-1 x``, the next whitened states to a
        tensor of their own, and the whitening last.
        """
        n, width = len(lengths), steps.shape[1] - 1
        std, whitening = self._std_grid(covariance, n, width + 1), None
        if std is None:
            whitening = self._shared_whitening(covariance)
            if whitening is None:
                return None
            std = self._constant_std_grid(1.0, n, width + 1)
        if width:
            noise = host_grid(noises, n, width)
        else:
            noise = np.zeros((n, 1, 1), dtype=_NUMPY_DTYPES[self.dtype])
        if whitening is not None:  # whitened coordinates z = L^-1 x, where L = std I with std 1
            white_path = self._whitened("path.whitened", path, whitening)
            new_z = torch.empty((n, *self.event_shape), dtype=self.dtype)
            host_path = host_grid(white_path, n, width + 1)
            return std, host_path, noise, new_z, host_grid(new_z, n), whitening
        host_path, host_first = self._host("path", path)
        if self.target.has_memory:  # next_memory may keep the new states: a tensor of their own
            new_x = torch.empty((n, *self.event_shape), dtype=self.dtype)
            return std, host_path, noise, new_x, host_grid(new_x, n), None
        self.slot = (self._columns("path", path)[0], path)
        return std, host_path, noise, self.slot[0], host_first, None

    def _shared_whitening(self, covariance):
        """``covariance`` where it is one invertible ``L`` shared by every slot
        (:meth:`~gaussspec.Covariance.shared_inverse`: a dense Cholesky factor for float64 states,
        a positive diagonal), else None; the verdict is kept for the covariance object.

        With one invertible ``L`` for every slot the round is the isotropic one (std 1) in the
        whitened coordinates ``z = L^-1 x``: the draft mean read off a drafted state is
        ``L^-1 m_p``, the gap ``L^-1 (m_q - m_p)`` is the general path's whitened gap, and every
        next state is ``L`` times its whitened one (ALGORITHMS sections 1-3 are affine-invariant).
        """
        kept = self.shared_whitening
        if kept is None or kept[0] is not covariance:
            shared = covariance.shared_inverse(self.event_shape, self.dtype)
            kept = self.shared_whitening = (covariance, covariance if shared else None)
        return kept[1]

    def _whitened(self, name: str, grid: torch.Tensor, whitening) -> torch.Tensor:
        """``L^-1 x`` for every slot of an ``(n, columns, *event)`` grid, in a kept buffer."""
        return whitening.inverse_apply(grid, self._grid(name, tuple(grid.shape), False))

    @staticmethod
    def _spare(pairs: dict, key, make: Callable[[], torch.Tensor], current):
        """One of two ``(tensor, host view)`` pairs kept in ``pairs[key]``: never ``current``'s.

        Double buffering for what a round writes while the previous round's result is still in
        use (the free drafter's current cache, the current draft noise).
        """
        pair = pairs.get(key)
        if pair is None:
            pair = pairs[key] = [(t, host_grid(t, t.shape[0])) for t in (make(), make())]
        return pair[1] if pair[0][0] is current else pair[0]

    def _step_compiled(self, means, draft_means, noises, steps, lengths, chains_np, uniforms,
                       residual_uniforms, fresh, inputs, gather):
        """Verification and the next states by the compiled CPU path, or None if it does not apply.

        ``inputs`` is what :meth:`_compiled_inputs` prepared (None: not isotropic nor one shared
        invertible factor; with such a factor the target means are whitened too); ``gather`` a
        :meth:`_gather_plan` done in the same call (or None). Returns ``(tau, log_w, next_states,
        finite)`` like :meth:`_step_general`.
        """
        if inputs is None or not (means.dtype == self.dtype and means.is_contiguous()):
            return None
        std, path, noise, new_x, out, whitening = inputs
        target_means = means if whitening is None else self._whitened("means.whitened", means,
                                                                      whitening)
        found, finite = fused_step(
            host_grid(target_means, len(lengths), steps.shape[1]), path, noise,
            host_grid(fresh, len(lengths)), lengths, std, uniforms, residual_uniforms,
            self.verification == "token", self.coupling == "reflection", out,
            None if gather is None else gather[1])
        if found.status != 0:
            # a drafted slot's mean is not finite (the general path finds which and decides), a
            # zero std (mutually singular) or an overflow
            return None
        if whitening is not None:  # x = L z, from the whitened coordinates
            new_x = whitening.apply(new_x.reshape(len(lengths), *self.noise_shape),
                                    self.event_shape)
            finite = finite and bool(torch.isfinite(new_x.sum()))
        return found.tau, found.log_weight, new_x, finite

    def _step_general(self, means, draft_means, noises, steps, lengths, chains_np, uniforms,
                      residual_uniforms, fresh, drafted_again=False):
        """Verification and the next states with torch operations: any covariance, any device.

        Returns ``(tau, log_w, next_states, finite)``: accepted lengths, ``log w_tau``, the states
        after the accepted drafts (bonus, residual or reflection step) and whether they are finite.
        """
        target, shape, device, n = self.target, self.event_shape, self.device, len(lengths)
        if draft_means is not None:
            draft_means = draft_means.grid()
        width = 0 if draft_means is None else draft_means.shape[1]
        deltas = log_ratio = np.zeros((n, 1))
        undefined = None  # drafted states where m_q is not finite, with their m_q (see below)
        if width > 0:
            log_ratio, deltas, target_finite, draft_finite = self._slot_ratios(
                means, draft_means, noises, steps)
            drafted = self.positions[:width] < lengths[:, None]
            drafts_finite = bool(draft_finite[drafted].all())
            if not (drafts_finite and target_finite[drafted].all()):  # a drafted slot
                undefined = self._undefined_target_means(
                    means, draft_means, steps, lengths, chains_np, drafted & ~target_finite,
                    drafts_finite, drafted_again)  # or raises
                log_ratio, deltas, _, _ = self._slot_ratios(means, draft_means, noises, steps)
        tau, log_w = accepted_lengths(log_ratio, deltas, uniforms, lengths, self.verification)
        if undefined is not None:  # a chain that would step from such a state: as a plain chain
            rows, positions, values = undefined
            stepped_from = positions <= tau[rows]
            if stepped_from.any():
                at = self._device_index(np.nonzero(stepped_from)[0])
                rows_t, positions_t = (self._device_index(rows[stepped_from]),
                                       self._device_index(positions[stepped_from]))
                _check_finite(values[at], f"{type(target).__name__} mean",
                              steps[rows_t, positions_t],
                              self._device_index(chains_np[rows[stepped_from]]))  # raises
        tau_t = self._device_index(tau)
        t_next = steps[self.chain_ids[:n], tau_t]
        covariance = target.covariance(t_next)
        base = means[self.chain_ids[:n], tau_t]  # m_q at x_tau (bonus, mutually singular)
        rejected = np.nonzero(tau < lengths)[0]
        rejected_delta = deltas[rejected, tau[rejected]]
        coupled = rejected[np.isfinite(rejected_delta) & (rejected_delta > 0)]
        if len(coupled):
            sel = self._device_index(coupled)
            tau_sel = tau_t[sel]
            w_sel, _ = whitened_gaps(target.covariance(t_next[sel]), means[sel, tau_sel],
                                     draft_means[sel, tau_sel], self.range_rtol)
            work = w_sel.dtype  # float64, or float32 on the element-wise fast path
            d_sel = torch.as_tensor(deltas[coupled, tau[coupled]], device=device)
            step_noise = fresh.to(work)
            base = base.to(work)
            if self.coupling == "gamma":
                step_noise[sel] = residual_noise(
                    w_sel, d_sel, log_w[coupled], residual_uniforms[coupled], step_noise[sel]
                )
                base[sel] = draft_means[sel, tau_sel].to(work)  # the residual is centred on m_p
            else:
                step_noise[sel] = reflection_noise(noises[sel, tau_sel].to(work), w_sel, d_sel)
            new_x = covariance.step(base, step_noise, shape).to(self.dtype)
        else:
            new_x = covariance.step(base, fresh, shape)  # bonus or target draw: m_q + L zeta
        return tau, log_w, new_x, bool(torch.isfinite(new_x.sum()))

    def _slot_ratios(self, means, draft_means, noises, steps):
        """Each drafted slot's log ratio and whitened gap (ALGORITHMS 2), and whether its target
        and its draft mean are finite: four ``(n, width)`` host arrays, read in one transfer."""
        target, shape, n, width = self.target, self.event_shape, *draft_means.shape[:2]
        whitened, delta = whitened_gaps(
            target.covariance(steps[:, :width].reshape(-1)),
            means[:, :width].reshape(n * width, *shape),
            draft_means.reshape(n * width, *shape), self.range_rtol,
        )
        ratio = log_ratios(noises.reshape(n * width, *noises.shape[2:]), whitened, delta)
        target_finite = torch.isfinite(means[:, :width].reshape(n, width, -1)).all(2)
        draft_finite = torch.isfinite(draft_means.reshape(n, width, -1)).all(2)
        log_ratio, delta, target_finite, draft_finite = torch.stack(
            [ratio, delta, target_finite.reshape(-1).to(ratio.dtype),
             draft_finite.reshape(-1).to(ratio.dtype)]).reshape(4, n, width).cpu().numpy()
        return log_ratio, delta, target_finite > 0, draft_finite > 0

    def _undefined_target_means(self, means, draft_means, steps, lengths, chains_np, undefined,
                                drafts_finite, drafted_again):
        """Drafted states where the target's mean is not finite: set ``m_q = m_p`` there.

        A draft that runs far from the target's mass can reach states where the target's mean
        is undefined (a log density that overflows); the target chain reaches them too, with a
        probability that is usually negligible, and fails there. Within the round such a state's
        ``m_q`` is replaced by the draft's ``m_p`` (a proper kernel, the same Gaussian): the
        round is then exact for a target that steps from those states as the draft does, which
        is the true target until the chain first reaches one of them. The caller raises
        :class:`NonFiniteMeanError` if the accepted path reaches one (the chain would step from
        it, where a plain chain fails), so the run follows the true target chain, failure
        included; a chain's own state (slot 0) is one it steps from whatever the round accepts.
        A non-finite draft mean (``drafts_finite`` False) raises :class:`_DraftRanOff`, for the
        round to be drafted again with ``m_p := x`` there; in a round so drafted
        (``drafted_again``), :class:`NonFiniteMeanError`.

        Returns ``(rows, positions, values)``: the replaced slots (``undefined``, an ``(n,
        width)`` host mask of drafted slots) and their original means.
        """
        if not drafts_finite:
            if not drafted_again:
                raise _DraftRanOff  # drafted again, m_p := x there (the caller)
            self._check_grid(means, draft_means, steps, lengths, chains_np, -1)  # raises
        rows, positions = np.nonzero(undefined)
        rows_t, positions_t = self._device_index(rows), self._device_index(positions)
        values = means[rows_t, positions_t].clone()
        means[rows_t, positions_t] = draft_means[rows_t, positions_t].to(means.dtype)  # m_q := m_p
        return rows, positions, values

    def _constant_std_grid(self, std: float, n: int, columns: int) -> np.ndarray:
        """An ``(n, columns)`` grid of one std, kept across rounds (the compiled calls only read
        it)."""
        key = (std, n, columns)
        grid = self.std_grids.get(key)
        if grid is None:
            if len(self.std_grids) > 64:  # a std that changes every step: keep a few
                self.std_grids.clear()
            grid = self.std_grids[key] = np.full((n, columns), std)
        return grid

    def _std_grid(self, covariance, n: int, columns: int) -> np.ndarray | None:
        """``(n, columns)`` host stds of an isotropic covariance, or None for any other kind.

        A scalar std gives a grid kept across rounds (the compiled calls only read it).
        """
        if not isinstance(covariance, IsotropicCovariance):
            return None
        if covariance._scalar is not None:
            return self._constant_std_grid(covariance._scalar, n, columns)
        std = covariance.std.detach().to(torch.float64).cpu().numpy().reshape(-1)
        if std.size not in (1, n * columns):
            return None
        grid = np.empty((n, columns))  # writable: a read-only array is another numba type,
        grid.reshape(-1)[:] = std  # compiled anew (~1 s) in the middle of some run
        return grid

    def _gather_plan(self, evaluations, flat_index: np.ndarray, n: int):
        """Where a compiled gather of each chain's evaluation at its accepted slot goes.

        A plain float CPU tensor is gathered into one of two buffers kept across rounds (the free
        drafter's cache, read by the next round's drafts: never the buffer holding the current
        cache). Returns ``(out, (source, flat_index, host_out))`` for :func:`gather_rows`, or None
        for anything else (a tree, another device, a kernel with memory that may keep it).
        """
        if not (self.on_cpu and not self.target.has_memory and isinstance(evaluations, torch.Tensor)
                and evaluations.dtype in _NUMPY_DTYPES and evaluations.is_contiguous()
                and not evaluations.requires_grad and evaluations.ndim >= 1):
            return None
        key = (n, tuple(evaluations.shape[1:]), evaluations.dtype)
        out, host = self._spare(self.cache_buffers, key,
                                lambda: evaluations.new_empty((n, *key[1])), self.cache)
        return out, (host_grid(evaluations, evaluations.shape[0]), flat_index, host)

    def _evaluations_at(self, evaluations, flat_index: np.ndarray, tau: np.ndarray):
        """Each chain's target evaluation at its accepted slot, ``evaluations[flat_index[b, tau_b]]``
        (compiled into reused buffers where :meth:`_gather_plan` applies, else ``index_select``)."""
        n = len(tau)
        plan = self._gather_plan(evaluations, flat_index, n)
        if plan is not None:
            gather_rows(*plan[1][:2], tau, plan[1][2])
            return plan[0]
        at_tau = self._device_index(flat_index[np.arange(n), tau])
        return _tree_map(lambda e: torch.index_select(e, 0, at_tau), evaluations)

    def _draft_again(self, x0, t0_host, memory0, stale, lengths, width, shortest, chains_np,
                     noises):
        """The round drafted again from the same noises with ``m_p := x`` wherever the draft's
        mean is not finite, and its target call.

        A draft mean that is not finite (a cheap force that blows up where the draft ran, a
        low-precision draft that overflows) leaves no proposal at that state, and every drafted
        state after it undefined. The draft kernel taken instead, ``m_p`` where finite and ``x``
        elsewhere, is a proper Gaussian kernel equal to the draft wherever that is defined, so
        drafting with it from the same noises draws the same states up to there: the round is
        exact for it as for any draft. The target is called again on the new states (one more
        sequential call); the first call's results are dropped.

        Returns ``(path, draft_means, means, evaluations, flat_index, target_memory)``.
        """
        self.fallback_rounds += 1
        if self.fallback_rounds == 1:
            warnings.warn(
                f"the {type(self.draft_kernel).__name__} draft's mean was not finite at a drafted "
                f"state (round {self.stats.rounds}); such rounds are drafted again with the "
                "draft mean replaced by the state there (exact; one more target call each)",
                RuntimeWarning, stacklevel=5)
        path, draft_means, _, steps, _ = self._draft(x0, t0_host, memory0, stale, lengths, width,
                                                     shortest, chains_np, noises)
        if draft_means is not None:
            draft_means.grid()
        means, evaluations, flat_index, target_memory, _ = self._verify_target(
            path, steps, lengths, shortest == width, stale, memory0, lambda: None)
        self.stats.rounds -= 1  # the same round: one more sequential call, not another round
        return path, draft_means, means, evaluations, flat_index, target_memory

    def _round(self, chains_np: np.ndarray, latest: int) -> None:
        """One speculative round of these chains; ``latest`` is the largest step of any chain."""
        target, gamma, shape, device = self.target, self.gamma, self.event_shape, self.device
        n = len(chains_np)
        all_chains = n == self.num_chains
        chains = self.chain_ids if all_chains else self._device_index(chains_np)
        x0 = self.x if all_chains else self.x[chains]
        t0_host = self.t_host if all_chains else self.t_host[chains_np]  # read before the update
        memory0 = None
        if self.memory is not None:
            memory0 = self.memory if all_chains else self.memory[chains]
        # Draft lengths: a round may advance at most the chain's remaining steps (tau + 1 <= K - t).
        if self.adaptive is not None:
            gamma = self.round_gamma  # chosen by _adaptive_plain
            target_time, draft_time = self.stats.target_time, self.stats.draft_time
        if all_chains and latest + gamma < self.num_steps and (
                self.all_cached or self.drafter.source != "free"):
            lengths, width, shortest = self._full_lengths(gamma), gamma, gamma  # no chain nears K
        else:
            lengths = np.minimum(gamma, self.num_steps - t0_host - 1)
            if self.drafter.source == "free" and not self.all_cached:
                lengths = np.where(self.has_cache[chains_np], lengths, 0)
            width, shortest = int(lengths.max()), int(lengths.min())

        # --- the frozen evaluation (one extra sequential target call) or the cached one -------
        stale = None
        if self.drafter.source == "frozen":
            stale = self._target_evaluate(x0, self._device_index(t0_host))
            self.stats.sequential_target_calls += 1
        elif self.drafter.source == "free" and width > 0:
            stale = self.cache if all_chains else _tree_map(lambda c: c[chains], self.cache)

        # --- drafting, ONE batched target call, verification ----------------------------------
        path, draft_means, noises, steps, grid_covariance = self._draft(
            x0, t0_host, memory0, stale, lengths, width, shortest, chains_np)
        next_width = gamma  # the next round's draft noise (an adaptive rule mostly keeps g)
        if self.adaptive is not None:  # the drafting loop, after the frozen drafter's call
            frozen_call = self.stats.target_time - target_time
            drafting_time = time.perf_counter() - self.drafting_started
        inputs = None
        if self.fused_verification:  # L = std I or one shared L, on CPU: made while caches warm
            inputs = self._compiled_inputs(grid_covariance, path, noises, steps, lengths)
        if inputs is None and draft_means is not None:
            draft_means.grid()  # stored before the call, while the drafts are in the cache
        next_out = None
        if next_width and self.on_cpu:  # the next draft noise goes to a kept buffer
            self.current_noise = noises
            next_out = self._noise_buffer((n, next_width, *self.noise_shape))
        means, evaluations, flat_index, target_memory, draws = self._verify_target(
            path, steps, lengths, shortest == width, stale, memory0,
            lambda: self._round_draws(chains_np, lengths, next_width, next_out))
        tick = time.perf_counter()
        uniforms, fresh, residual_uniforms, next_noise = draws.result()
        self.stats.noise_time += time.perf_counter() - tick  # waiting for the background draws
        if next_noise is not None:
            self.prefetched = (chains_np, next_noise)
        stepped = gather = tau_eval = None
        if inputs is not None:  # L = std I (or whitened) on CPU: one compiled call does the rest
            if self.drafter.source == "free":
                gather = self._gather_plan(evaluations, flat_index, n)
            stepped = self._step_compiled(means, draft_means, noises, steps, lengths, chains_np,
                                          uniforms, residual_uniforms, fresh, inputs, gather)
            if stepped is not None and gather is not None:
                tau_eval = gather[0]  # the free drafter's next cache, gathered in that call
        if stepped is None:
            try:
                stepped = self._step_general(means, draft_means, noises, steps, lengths,
                                             chains_np, uniforms, residual_uniforms, fresh)
            except _DraftRanOff:  # a draft mean not finite at a drafted state
                path, draft_means, means, evaluations, flat_index, target_memory = (
                    self._draft_again(x0, t0_host, memory0, stale, lengths, width, shortest,
                                      chains_np, noises))
                stepped = self._step_general(means, draft_means, noises, steps, lengths,
                                             chains_np, uniforms, residual_uniforms, fresh,
                                             drafted_again=True)
        tau, log_w, new_x, finite = stepped
        if not finite:  # a non-finite mean reached the new state
            self._check_grid(means, draft_means, steps, lengths, chains_np, 0)
            _check_finite(new_x, "the new state", self._device_index(t0_host + tau), chains)

        # --- advance the chains -------------------------------------------------------------
        if tau_eval is None and (target.has_memory or self.drafter.source == "free"):
            tau_eval = self._evaluations_at(evaluations, flat_index, tau)
        if target.has_memory:
            rows, tau_t = self.chain_ids[:n], self._device_index(tau)
            t_next = self._device_index(t0_host + tau)
            new_memory = target.next_memory(
                path[rows, tau_t], t_next, target_memory[rows, tau_t], tau_eval, new_x
            )
            if all_chains:
                self.memory = new_memory
            else:
                self.memory[chains] = new_memory
        if self.drafter.source == "free":
            if all_chains:
                self.cache = tau_eval
            else:
                if self.cache is None:
                    self.cache = _tree_map(
                        lambda e: e.new_zeros((self.num_chains, *e.shape[1:])), tau_eval
                    )
                _tree_map(lambda c, e: c.__setitem__(chains, e), self.cache, tau_eval)
            if not self.all_cached:
                self.has_cache[chains_np] = True
                self.all_cached = bool(self.has_cache.all())
        if self.trajectory is not None or self.stream is not None:
            a_rows, a_pos = self._pairs(tau, 1)
            a_rows, a_pos = self._device_index(a_rows), self._device_index(a_pos)
            if len(a_rows):
                self._record(steps[a_rows, a_pos], chains[a_rows], path[a_rows, a_pos])
            self._record(self._device_index(t0_host + tau + 1), chains, new_x)
        if all_chains:
            self.x = new_x
        else:
            self.x[chains] = new_x
        if all_chains:
            self.t_host += tau + 1
        else:
            self.t_host[chains_np] += tau + 1
        self.pending_stats.append((tau, lengths))  # folded into stats in batches (additive)
        if len(self.pending_stats) >= 64:
            self._fold_stats()
        if self.bar.bar is not None:
            self.bar.update(int(tau.sum()) + n)
        if self.adaptive is not None:
            # states verified: every chain's drafts and its start (no numpy reduction when all
            # chains draft the full width: a cold one costs a few microseconds a round)
            call_states = n * (width + 1) if shortest == width else int(lengths.sum()) + n
            self.adaptive.update(chains_np, tau, lengths, call_states,
                                 self.stats.target_time - target_time,
                                 self.stats.draft_time - draft_time, width,
                                 time.perf_counter() - self.mark, drafting_time,
                                 timed=compilations() == self.mark_compilations,
                                 frozen_call_time=frozen_call)
            # the next action's time starts here (a compilation from now on leaves it untimed:
            # the policy's own first decision compiles)
            self.mark, self.mark_compilations = time.perf_counter(), compilations()
