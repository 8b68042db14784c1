"""What a draft length per chain could gain over one per round: an oracle bound on DDPM.

The adaptive rule (gaussspec/adaptive.py) drafts one length ``g`` for every chain of a round,
priced from acceptance counts pooled over the chains. A round's sequential cost is set by its
longest draft, so a chain drafting less saves only its share of the batched target call: on a
throughput-bound call (16 DDPM chains on a CPU: the call's time grows with its states) a chain
whose drafts fail could stop early while the others draft on. This script bounds that gain.

It runs the sampler at ``--draft-length`` (every position of every chain drafted, so the counts
see each chain's acceptance up to that length), records each chain's accepted length ``tau``
and diffusion step ``t`` round by round, and estimates the survival curve ``S_j(t) = P(tau >= j)``
per band of ``t`` (Kaplan-Meier over positions, ``--bands`` bands: acceptance falls late in the
diffusion). Then, for every recorded round, with the chains where they were and the oracle curves
``S_j(t_i)``:

* one length: the best ``g`` for all chains, goodput ``sum_i (1 + sum_{j<=g} S_j(t_i))`` over
  ``C(n (g + 1)) + o + d g`` seconds (G1 of ALGORITHMS section 9), or plain steps, ``n`` over
  ``C(n) + p`` (G2), where they win: the rule takes them (g = 0);
* one length per chain: for each longest length ``G``, the chains' positions added in order of
  their ``S_j(t_i)`` (a chain's curve falls with ``j``, so the order keeps every chain's drafts a
  prefix) while the goodput grows, then the best ``G``; or plain steps, as above.

``C(s)`` is the target call measured on ``s`` states at mid-diffusion (medians of
``--cost-repeats`` calls); ``o`` and ``d`` the engine's time per round and per drafted position
from the recording runs' own counters, ``p`` the engine's time per step of a plain run. The
reported gain is the mean time per chain-step of the first over the second, minus 1: what the
best per-chain choice could save, knowing every chain's acceptance exactly. No adaptive rule
reaches its oracle, so the gain in use is smaller. ``--without-plain`` leaves plain steps out of
both (the bound this script first reported: a chain drafting nothing is then a plain step that
only the per-chain choice has).

Run:

    OMP_NUM_THREADS=1 python benchmarks/per_chain_lengths.py --steps 250 --batch 16 --seeds 6

Writes ``per_chain_lengths.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import attrs  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.adapters.ddpm import DiffusionKernel  # noqa: E402
from gaussspec.adapters.ddpm.models import load_digits_pipeline  # noqa: E402
from gaussspec.benchmarking.adapter_suites import load_script  # noqa: E402

torch.set_num_threads(1)


ForcedDraftLength = load_script("adaptive_gap").ForcedDraftLength


@attrs.frozen
class RecordedDraftLength(ForcedDraftLength):
    """The rule forced to ``forced`` (``adaptive_gap.ForcedDraftLength``), each round's chains,
    accepted lengths ``tau`` and draft lengths kept in ``rounds`` (a fresh list per run)."""

    rounds: list = attrs.field(factory=list, eq=False, kw_only=True)
    probe: bool = attrs.field(default=False, kw_only=True)  # every step in a recorded round

    def start(self, num_chains: int) -> gs.adaptive.AdaptiveState:
        state = super().start(num_chains)
        update = state.update
        self.rounds.clear()

        def recording_update(chains, tau, lengths, *rest, **named):
            self.rounds.append((np.array(chains), np.array(tau), np.array(lengths)))
            return update(chains, tau, lengths, *rest, **named)

        state.update = recording_update
        return state


def record(kernel, drafter, batch: int, draft_length: int, seeds: int) -> tuple[np.ndarray, dict]:
    """Rows ``(run, round, chain, t, tau, length)`` over ``seeds`` runs (rounds numbered across
    runs), and the engine's times: per round outside the target and draft calls, per drafted
    position, and per step of a plain run (outside its target calls)."""
    policy = RecordedDraftLength(max_draft_length=draft_length, forced=draft_length)
    sampler = gs.SpeculativeSampler(kernel, drafter, policy)
    warm = torch.Generator().manual_seed(seeds)  # compiles the engine's code: not timed
    sampler.sample(kernel.initial_state(batch, warm), generator=warm)
    rows, engine, drafting, positions, rounds_total = [], 0.0, 0.0, 0, 0
    for seed in range(seeds):
        generator = torch.Generator().manual_seed(seed)
        result = sampler.sample(kernel.initial_state(batch, generator), generator=generator)
        t = np.zeros(batch, dtype=np.int64)
        for number, (chains, tau, lengths) in enumerate(policy.rounds):
            for chain, accepted, length in zip(chains, tau, lengths):
                rows.append((seed, rounds_total + number, chain, t[chain], accepted, length))
            t[chains] += tau + 1
            positions += int(lengths.max())
        rounds_total += len(policy.rounds)
        stats = result.stats
        engine += stats.wall_time - stats.target_time - stats.draft_time
        drafting += stats.draft_time
    plain = gs.sample_chain(kernel, kernel.initial_state(batch, warm), generator=warm).stats
    return np.array(rows), {"engine_per_round": engine / rounds_total,
                            "draft_per_position": drafting / max(positions, 1),
                            "plain_engine_per_step":  # p (G2): a plain run's time outside calls
                                (plain.wall_time - plain.target_time) / plain.rounds}


def step_band(t: np.ndarray, steps: int, bands: int) -> np.ndarray:
    """The band (0 .. bands - 1) of each diffusion step ``t`` in ``0 .. steps - 1``."""
    return np.minimum(t * bands // steps, bands - 1)


def survival_by_band(rows: np.ndarray, steps: int, bands: int, length: int) -> np.ndarray:
    """``S_j`` for j = 1..length per band of the diffusion step ``t`` (Kaplan-Meier); a position
    no chain of the band was at risk at keeps the curve where it was."""
    band = step_band(rows[:, 3], steps, bands)
    curves = np.ones((bands, length))
    for b in range(bands):
        mine = band == b
        hits, at_risk = gs.adaptive.round_counts(rows[mine, 4], rows[mine, 5], length)  # G3
        q = np.divide(hits, at_risk, out=np.ones(length), where=at_risk > 0)  # q_j (G3)
        curves[b] = np.cumprod(q)  # S_j = prod q_i
    return curves


def call_costs(kernel, batch: int, length: int, repeats: int) -> np.ndarray:
    """``C(s)`` for s = batch (g + 1), g = 0..length: medians of timed target calls."""
    generator = torch.Generator().manual_seed(0)
    middle = torch.full((1,), kernel.num_steps // 2, dtype=torch.long)
    costs = np.zeros(length + 1)
    for g in range(length + 1):
        states = kernel.initial_state(batch * (g + 1), generator)
        t = middle.expand(states.shape[0])
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            kernel.mean(states, t)
            times.append(time.perf_counter() - tick)
        costs[g] = statistics.median(times)
    return costs


def plain_goodput(n: int, costs: np.ndarray, plain_engine: float | None) -> float:
    """Plain steps' goodput ``n / (C(n) + p)`` (G2); 0 when they are left out (``None``)."""
    return 0.0 if plain_engine is None else n / (costs[0] + plain_engine)


def best_uniform(curves: list, costs: np.ndarray, engine: float, per_position: float,
                 plain_engine: float | None = None) -> float:
    """The best goodput (chain-steps per second) of one length for every chain (G1), plain
    steps (G2) included unless ``plain_engine`` is None."""
    best = plain_goodput(len(curves), costs, plain_engine)
    for g in range(1, len(costs)):
        steps = sum(1.0 + curve[:g].sum() for curve in curves)  # n (1 + sum S_j) (G1)
        best = max(best, steps / (costs[g] + engine + per_position * g))  # T_spec(g) (G1)
    return best


def best_per_chain(curves: list, costs: np.ndarray, batch: int, engine: float,
                   per_position: float, plain_engine: float | None = None) -> float:
    """The best goodput with a length per chain: positions added in order of their S_j; plain
    steps (G2) included unless ``plain_engine`` is None."""
    n = len(curves)
    best = plain_goodput(n, costs, plain_engine)
    sizes = batch * np.arange(1, len(costs) + 1)  # the states of each measured call size
    for longest in range(1, len(costs)):
        gains = -np.sort(-np.concatenate([curve[:longest] for curve in curves]))
        steps = n + np.cumsum(gains)  # each added position adds its S_j (G1)
        call = np.interp(n + np.arange(1, len(gains) + 1), sizes, costs)  # C(s), interpolated
        best = max(best, float(np.max(steps / (call + engine + per_position * longest))))
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=250, help="DDPM steps K")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--draft-length", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--bands", type=int, default=10)
    parser.add_argument("--cost-repeats", type=int, default=7)
    parser.add_argument("--without-plain", action="store_true",
                        help="leave plain steps out of both choices (the first bound's reading)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    pipeline = load_digits_pipeline()
    kernel = DiffusionKernel(pipeline.unet, pipeline.scheduler, args.steps,
                             frozen_quantity="sample")
    rows, engine = record(kernel, gs.FreeDrafter(), args.batch, args.draft_length, args.seeds)
    curves = survival_by_band(rows, args.steps, args.bands, args.draft_length)
    costs = call_costs(kernel, args.batch, args.draft_length, args.cost_repeats)
    band = step_band(rows[:, 3], args.steps, args.bands)
    plain_engine = None if args.without_plain else engine["plain_engine_per_step"]
    uniform_time = per_chain_time = 0.0
    plain_rounds = 0  # rounds where plain steps beat every single length
    spreads = []
    for number in np.unique(rows[:, 1]):
        mine = rows[:, 1] == number
        these = [curves[b] for b in band[mine]]
        uniform = best_uniform(these, costs, engine["engine_per_round"],
                               engine["draft_per_position"], plain_engine)
        per_chain = best_per_chain(these, costs, args.batch, engine["engine_per_round"],
                                   engine["draft_per_position"], plain_engine)
        plain_rounds += int(uniform == plain_goodput(len(these), costs, plain_engine))
        uniform_time += mine.sum() / uniform  # seconds per round of these chains' steps
        per_chain_time += mine.sum() / per_chain
        spreads.append(int(np.ptp(rows[mine, 3])))
    report = {
        "steps": args.steps, "batch": args.batch, "draft_length": args.draft_length,
        "seeds": args.seeds, "rounds": int(len(np.unique(rows[:, 1]))),
        "survival_1_by_band": np.round(curves[:, 0], 3).tolist(),
        "survival_8_by_band": np.round(curves[:, min(7, args.draft_length - 1)], 3).tolist(),
        "call_seconds": costs.tolist(), **engine,
        "median_step_spread_in_a_round": statistics.median(spreads),
        "with_plain_steps": not args.without_plain,
        "rounds_where_plain_wins": plain_rounds,
        "per_chain_gain": uniform_time / per_chain_time - 1.0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "per_chain_lengths.json").write_text(json.dumps(report, indent=1))
    print(f"DDPM K={args.steps}, batch {args.batch}, {report['rounds']} rounds at g = "
          f"{args.draft_length}: chains' steps spread by {report['median_step_spread_in_a_round']}"
          f" within a round (median); C(s) {costs[0] * 1e3:.1f} -> {costs[-1] * 1e3:.1f} ms for "
          f"{args.batch} -> {args.batch * (args.draft_length + 1)} states; a length per chain "
          f"would save {100 * report['per_chain_gain']:.2f}% of the time per chain-step "
          f"(oracle acceptance by band of t; plain steps "
          f"{'left out' if args.without_plain else f'win {plain_rounds} rounds of one length'})")
    print("S_1 by band:", report["survival_1_by_band"])
    print("S_8 by band:", report["survival_8_by_band"])


if __name__ == "__main__":
    main()
