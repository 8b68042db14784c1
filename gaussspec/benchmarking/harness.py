"""Interleaved timing of plain and speculative runs of the same kernel.

Every suite measures a *case* (one kernel, one batch of start states) against a list of
*contenders*: the plain chain first, then speculative samplers. Each repeat runs every contender
once, with the same seed for all contenders of that repeat, and the repeat's runs advance
together: in turns, each through the same share of its chain (one of ``WAVES`` waves) before the
next takes its turn, in a rotated order (so no contender always goes first). On a shared machine
the speed drifts by 10-30% over a few hundred milliseconds (one kernel call's time, the same
call repeated, moved between 0.55 and 1.03 ms in 100 ms blocks here); whole runs one after
another (seconds each) met different speeds, and one run's ratio to another spread by 10-16%.
Turns of tens of milliseconds put every run of a repeat through the same stretch of the
machine's speed: the spread fell by about half on diamonds (Langevin, one chain), at the price
of the caches each turn refills. Reported numbers are medians over repeats; speed-ups are the
plain chain's median wall-clock over the contender's. A run's times are the sums over its turns
(a run counts neither the time it waits for its turn nor, for the adaptive rule's cost model,
that time between its rounds). The garbage collector is collected before each repeat and off
during it, as ``timeit`` does, so that collection pauses left over from other runs do not land in
a run (the objects that exist before the repeats are frozen out of those collections, which
would otherwise walk every model and data set in the process before each repeat). Every contender runs once, untimed, before the repeats
(numba compiles for the case's array types once per process: that is start-up, not the steady
state these tables compare).
"""

from __future__ import annotations

import ast
import gc
import math
import statistics
import time
from typing import Callable

import attrs
import numpy as np
import torch

import gaussspec as gs
from gaussspec import residual

__all__ = ["Contender", "plain", "speculative", "adaptive", "measure", "slower_in", "best_fixed",
           "paired_gap", "warm_up", "ADAPTIVE"]

ADAPTIVE = "adaptive"


@attrs.frozen
class Contender:
    """One way of running a case's kernel.

    Attributes:
        label: Short name used in tables.
        sampler: The speculative sampler, or None for the plain chain.
        info: Settings copied into the result rows (draft length, verification, ...).
    """

    label: str
    sampler: gs.SpeculativeSampler | None
    info: dict = attrs.field(factory=dict)


def plain() -> Contender:
    """The plain sequential chain (``gaussspec.sample_chain``)."""
    return Contender("plain", None, {"kind": "plain", "draft_length": 0})


def speculative(target, drafter, draft_length: int, verification: str = "block",
                coupling: str = "gamma", label: str | None = None, drafter_name: str = "") -> Contender:
    """A fixed-draft-length speculative sampler."""
    sampler = gs.SpeculativeSampler(target, drafter, draft_length, verification, coupling)
    name = drafter_name or getattr(drafter, "source", "kernel")
    return Contender(label or f"{name} {verification}/{coupling} g={draft_length}", sampler, {
        "kind": "speculative", "draft_length": draft_length, "verification": verification,
        "coupling": coupling, "drafter": name})


def adaptive(target, drafter, max_draft_length: int = 16, verification: str = "block",
             label: str | None = None, drafter_name: str = "",
             policy: gs.AdaptiveDraftLength | None = None) -> Contender:
    """A speculative sampler with :class:`gaussspec.AdaptiveDraftLength` (its defaults, or
    ``policy``: a variant or a subclass, whose ``max_draft_length`` then counts)."""
    if policy is None:
        policy = gs.AdaptiveDraftLength(max_draft_length=max_draft_length)
    max_draft_length = policy.max_draft_length
    sampler = gs.SpeculativeSampler(target, drafter, policy, verification, "gamma")
    name = drafter_name or getattr(drafter, "source", "kernel")
    return Contender(label or f"adaptive (max {max_draft_length})", sampler, {
        "kind": ADAPTIVE, "draft_length": ADAPTIVE, "max_draft_length": max_draft_length,
        "verification": verification, "coupling": "gamma", "drafter": name})


def adaptive_settings(text: str) -> dict:
    """``"decay=0.97,switch_margin=0.0"`` -> keyword arguments of AdaptiveDraftLength (``""``: none).

    Raises:
        SystemExit: for a name that is not a setting of :class:`gaussspec.AdaptiveDraftLength`.
    """
    settings = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        if key not in attrs.fields_dict(gs.AdaptiveDraftLength):
            raise SystemExit(f"unknown AdaptiveDraftLength setting {key!r} in {text!r}")
        settings[key] = ast.literal_eval(value)
    return settings


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def rotated(items: list, repeat: int) -> list:
    """``items`` starting at ``repeat`` modulo their number: repeat ``repeat``'s running order
    (so no contender always runs first). The order stays cyclic: a contender runs right after
    the one listed before it in every repeat but those it starts (no after-effect showed on
    kidiq, "Where this stands against issue 6" in docs/benchmarks.md)."""
    start = repeat % len(items)
    return items[start:] + items[:start]


def _run_once(contender: Contender, kernel, x0: torch.Tensor, seed: int):
    """One timed run; like ``timeit``, with the garbage collector off (collected just before)."""
    generator = torch.Generator(device=x0.device).manual_seed(seed)
    gc.collect()
    gc.disable()
    try:
        _sync(x0)
        wall, cpu = time.perf_counter(), time.process_time()
        if contender.sampler is None:
            result = gs.sample_chain(kernel, x0, generator=generator)
        else:
            result = contender.sampler.sample(x0, generator=generator)
        _sync(x0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()
    return result.stats, wall, cpu


WAVES = 64  # a repeat's runs advance together through at most this many shares of the chain
MIN_TURN = 0.02  # seconds: the fastest contender's turns last about this long, at least


def _start(contender: Contender, kernel, x0: torch.Tensor, seed: int):
    """A contender's run as a generator (``sampler._rounds`` or ``sampler._plain_chain``)."""
    generator = torch.Generator(device=x0.device).manual_seed(seed)
    if contender.sampler is None:
        return gs.sampler._plain_chain(kernel, x0, generator, False, False)
    return contender.sampler._rounds(x0, generator)


def waves_for(fastest_run: float, most: int = WAVES, min_turn: float = MIN_TURN) -> int:
    """The waves of a case whose fastest contender's run takes ``fastest_run`` seconds: as many
    as give its turns ``min_turn`` seconds, between 1 and ``most``.

    A turn that follows another contender's pays for the caches that turn took (measured on
    kidiq, Laplace drafter, g = 32, a 0.19 s run: 15% slower in 64 turns after the plain
    chain's, no slower in 64 turns after a copy of itself, or in 16 after the plain chain's):
    turns of a few milliseconds would charge the fastest runs most.
    """
    return max(1, min(most, int(fastest_run / min_turn)))


def _run_interleaved(contenders: list[Contender], order: list[int], kernel, x0: torch.Tensor,
                     seed: int, waves: int = WAVES) -> dict[int, tuple]:
    """One repeat: every contender's run, interleaved in ``waves`` waves; ``{index: (stats,
    wall, cpu)}``.

    In wave ``w`` each contender runs until all its chains have reached step ``ceil(K (w + 1) /
    waves)``, so all runs go through the same share of the chain in the same stretch of time:
    the machine's speed, which drifts by 10-30% over a few hundred milliseconds here, then
    weighs alike on every contender of the repeat. ``order`` is the first wave's order; each
    later wave takes the contenders in an order drawn from ``seed``, so that no contender
    always follows the same one (a turn pays for the caches the turn before it took, and a
    fixed order would charge that to the same contenders every time: on eight_schools, free
    drafter, the rule read 7.7% behind g = 16 when it always followed g = 32's turn, and 0.7%
    ahead in another order). Each run's times are the sums over its turns (the runs do not
    count time suspended). The garbage collector is off during the repeat, collected before it.
    """
    shuffle = np.random.default_rng(seed)
    runs = {index: _start(contenders[index], kernel, x0, seed) for index in order}
    walls, cpus = dict.fromkeys(order, 0.0), dict.fromkeys(order, 0.0)
    reached = dict.fromkeys(order, 0)  # the step all of a run's chains have reached
    done: dict[int, tuple] = {}
    num_steps = int(kernel.num_steps)
    gc.collect()
    gc.disable()
    try:
        for wave in range(waves):
            goal = -(-num_steps * (wave + 1) // waves)  # ceil(K (w + 1) / waves)
            for index in (order if wave == 0 else shuffle.permutation(order).tolist()):
                if index in done:  # K < waves: a goal of K comes more than once
                    continue
                run = runs[index]
                _sync(x0)
                wall, cpu = time.perf_counter(), time.process_time()
                if goal == num_steps:  # the last wave: the run to its end, its result
                    done[index] = gs.sampler._finish(run)
                else:
                    while reached[index] < goal:
                        reached[index] = next(run)
                _sync(x0)
                walls[index] += time.perf_counter() - wall
                cpus[index] += time.process_time() - cpu
    finally:
        gc.enable()
    return {index: (done[index].stats, walls[index], cpus[index]) for index in order}


def measure(kernel, x0: torch.Tensor, contenders: list[Contender], repeats: int, seed: int = 0,
            on_row: Callable[[dict], None] | None = None, waves: int = WAVES) -> list[dict]:
    """Time every contender ``repeats`` times, interleaved; one summary row per contender.

    Args:
        kernel: The target kernel (the plain chain runs it; samplers hold it as their target).
        x0: Start states ``(B, *event_shape)``.
        contenders: The plain chain first, then the speculative samplers.
        repeats: Rounds of runs; each runs every contender once.
        seed: Repeat ``r`` seeds every contender's generator with ``seed + r``.
        on_row: Called with each finished row (progress printing).
        waves: A repeat's runs advance together, in turns, through at most this many equal
            shares of the chain (:func:`_run_interleaved`; fewer where the fastest contender's
            untimed run would make turns shorter than ``MIN_TURN``, :func:`waves_for`); ``0``
            runs them whole, one after another.

    Returns:
        Rows with medians of wall-clock, CPU time, in-target, in-draft and engine time, the
        counters of the first repeat (each repeat's rounds in ``rounds_all``), and ``speedup`` =
        plain median wall / this median wall.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if isinstance(waves, bool) or not isinstance(waves, int) or waves < 0:
        raise ValueError(f"waves must be an integer >= 0 (0: whole runs), got {waves!r}")
    if not contenders or contenders[0].sampler is not None:
        raise ValueError("the first contender must be the plain chain (benchmarking.harness.plain())")
    runs: list[list] = [[] for _ in contenders]
    untimed = [_run_once(contender, kernel, x0, seed)  # the first repeat's seed: a path known
               for contender in contenders]  # to run; compilations for this case's arrays, caches
    if waves:
        waves = waves_for(min(run[1] for run in untimed), waves)
    gc.collect()
    gc.freeze()  # what exists now (data, models) stays: the collection before each run is quick
    try:
        for repeat in range(repeats):
            order = rotated(list(range(len(contenders))), repeat)
            if waves:
                measured = _run_interleaved(contenders, order, kernel, x0, seed + repeat, waves)
                for index in order:
                    runs[index].append(measured[index])
            else:
                for index in order:
                    runs[index].append(_run_once(contenders[index], kernel, x0, seed + repeat))
    finally:
        gc.unfreeze()
    rows = []
    for contender, measured in zip(contenders, runs):
        stats = [m[0] for m in measured]
        first = stats[0]
        walls = [m[1] for m in measured]
        row = {
            "label": contender.label, **contender.info,
            "chains": int(x0.shape[0]), "num_steps": int(kernel.num_steps), "repeats": repeats,
            "waves": waves,  # the turns each run of a repeat took (0: whole runs)
            "wall_s": statistics.median(walls), "wall_s_all": walls,
            "wall_spread": (max(walls) - min(walls)) / statistics.median(walls),
            "cpu_s": statistics.median(m[2] for m in measured),
            "cpu_s_all": [m[2] for m in measured],
            "target_s": statistics.median(s.target_time for s in stats),
            "draft_s": statistics.median(s.draft_time for s in stats),
            "overhead_s": statistics.median(s.overhead_time for s in stats),
            "overhead_share": statistics.median(s.overhead_time / s.wall_time for s in stats),
            "noise_share": statistics.median(getattr(s, "noise_time", float("nan")) / s.wall_time
                                             for s in stats),
            "rounds": first.rounds,
            "rounds_all": [s.rounds for s in stats],
            "sequential_target_calls": first.sequential_target_calls,
            "target_evaluations": first.target_evaluations,
            "draft_evaluations": first.draft_evaluations,
            "block_efficiency": statistics.median(s.block_efficiency for s in stats),
            "mean_draft_length": first.draft_evaluations / first.chain_rounds,
            "acceptance_by_position": [None if np.isnan(a) else a
                                       for a in first.acceptance_by_position],
        }
        rows.append(row)
    plain_wall = rows[0]["wall_s"]
    for row, measured in zip(rows, runs):
        row["plain_wall_s"] = plain_wall
        row["speedup"] = plain_wall / row["wall_s"]
        # paired ratios (plain and contender of the same repeat) are less exposed to load drift
        row["speedup_paired"] = statistics.median(
            p[1] / m[1] for p, m in zip(runs[0], measured))
        if on_row is not None:
            on_row(row)
    return rows


def slower_in(row: dict, other: dict) -> tuple[int, int]:
    """``(k, n)``: ``row`` was slower than ``other`` in k of the n repeats.

    :func:`measure` interleaves the repeats, so run r of each contender forms a pair (the same
    seed, the machine in the same state), which tells a consistent gap from the runs' spread.
    """
    pairs = list(zip(row["wall_s_all"], other["wall_s_all"]))
    return sum(mine > theirs for mine, theirs in pairs), len(pairs)


def fixed_lengths(rows: list[dict], rule: dict) -> list[dict]:
    """The fixed-length rows of ``rule``'s drafter among one case's ``rows``: the draft lengths an
    adaptive row is compared with."""
    drafter = rule.get("drafter")
    return [r for r in rows if r["kind"] == "speculative" and r.get("drafter") == drafter]


CLOCKS = ("wall", "cpu")  # what a row's times are read as: wall-clock, or the process's CPU time


def _clock_key(clock: str) -> str:
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    return f"{clock}_s"


def best_fixed(rows: list[dict], rule: dict, clock: str = "wall") -> dict:
    """The fixed-length row of ``rule``'s drafter with the lowest median time among one case's
    ``rows``: what an adaptive row is judged against (issue 6's "best fixed draft length").

    Args:
        rows: One case's rows.
        rule: The adaptive row.
        clock: ``"wall"`` (wall-clock, the suites' reading) or ``"cpu"`` (the process's CPU time:
            on a shared machine it leaves out the time other work held the core; meaningless
            for the synthetic kernels, which sleep through their simulated latency).

    Raises:
        ValueError: no fixed-length row of that drafter, or an unknown ``clock``.
    """
    key = _clock_key(clock)
    same = fixed_lengths(rows, rule)
    if not same:
        raise ValueError(f"no fixed-length row of the drafter {rule.get('drafter')!r}")
    return min(same, key=lambda r: r[key])


def paired_gap(row: dict, other: dict, confidence: float = 0.95,
               clock: str = "wall") -> tuple[float, float, float]:
    """``row``'s time against ``other``'s over the paired repeats of :func:`measure`.

    The geometric mean of the per-repeat ratios ``row / other``, minus one, with a Student-t
    interval on the mean log ratio at ``confidence``: ``(gap, low, high)``. Run r of every
    contender shares its seed and the machine's state, so the pairs cancel load drift that a
    comparison of two medians keeps. With one repeat the interval is ``(nan, nan)``.

    ``clock`` is as in :func:`best_fixed`.

    Raises:
        ValueError: the two rows hold different numbers of repeats (they are not paired), or
            an unknown ``clock``.
    """
    key = _clock_key(clock) + "_all"
    mine, theirs = np.asarray(row[key]), np.asarray(other[key])
    if mine.shape != theirs.shape:
        raise ValueError(f"rows of {mine.size} and {theirs.size} repeats are not paired")
    logs = np.log(mine / theirs)  # log of each repeat's ratio
    centre = float(logs.mean())
    if logs.size < 2:
        return math.expm1(centre), math.nan, math.nan
    from scipy import stats  # imported here: the timing loop does not need it

    half = stats.t.ppf(0.5 + confidence / 2.0, logs.size - 1) * logs.std(ddof=1) / math.sqrt(
        logs.size)  # t_{n-1} quantile times the standard error of the mean log ratio
    return math.expm1(centre), math.expm1(centre - half), math.expm1(centre + half)


def warm_up() -> None:
    """Compile the residual sampler (numba) and touch torch's kernels before timing anything."""
    from gaussspec.testing import chains

    target = chains.OrnsteinUhlenbeckKernel(dimension=4, num_steps=12)
    draft = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(dimension=4, num_steps=12,
                                                            perturbation=0.5))
    x0 = torch.zeros(4, 4, dtype=torch.float64)
    for verification, coupling in (("block", "gamma"), ("token", "gamma"), ("token", "reflection")):
        for x in (x0, x0.float()):
            gs.SpeculativeSampler(target, draft, 3, verification, coupling).sample(
                x, generator=torch.Generator().manual_seed(0))
    gs.SpeculativeSampler(target, gs.FreeDrafter(), gs.AdaptiveDraftLength(4)).sample(
        x0, generator=torch.Generator().manual_seed(0))
    # the general (non-isotropic) path's compiled residual sampler and block scan
    one = np.ones(1)
    residual.sample_residual(-one, one, 0.5 * one)
    for token in (False, True):
        residual.block_accept_lengths(-np.ones((1, 2)), np.ones((1, 2)), np.full((1, 2), 0.5),
                                      np.full(1, 2), token)
