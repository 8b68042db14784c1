"""Where the adaptive rule's time goes against a fixed draft length, measured on the clock.

The recorded ``langevin`` suite compares the rule with the best fixed draft length by medians
of whole runs, and one chain's runs spread by several percent (its block efficiency and the
machine). This script splits the gap on paired seeds, for one posterior and drafter:

* ``fixed``: the speculative sampler at draft length ``g``;
* ``forced``: the adaptive sampler with its choice replaced by ``g`` (:class:`ForcedDraftLength`:
  every decision and update still runs and is timed, as in real use);
* ``rule``: the adaptive sampler.

``forced / fixed - 1`` is the rule's own work (the policy's decisions and updates, the sampler's
adaptive bookkeeping); ``rule / forced - 1`` is its choice (the lengths it drafts, its switches,
its start-up and any plain steps). Times are the process's CPU time (one thread: less disturbed
by other jobs than the wall clock, which is reported too); each difference is the mean of the
per-seed ratios with its standard error, and their median (one seed slowed by the machine moves
the mean by its share, not the median). Each seed runs the contenders in a rotated order (the
``k``-th seed starts with contender ``k`` modulo their number), so no contender always runs first
or after the same one. ``--without-forced`` runs ``fixed`` and ``rule`` alone: the rule's
expected gap (``total``) with a third less time a seed. ``--fixed 0`` puts the plain chain in
``fixed``'s place (with ``--without-forced``): the rule's gap to plain sampling, for the cases
where it ends up taking plain steps. It takes many seeds: one seed's ratio
spreads by about 15% (the two run different trajectories, and the rule's decisions depend on
the clock), so 20 seeds gave standard errors of 2-4% on arK (Laplace drafter) and 150 seeds
1.3% on low_dim_gauss_mix (free drafter). :mod:`adaptive_replay` prices the rule's decisions by
a fitted cost model instead (no clock); :mod:`adaptive_simulation` simulates a chain.

Run:

    OMP_NUM_THREADS=1 python benchmarks/adaptive_gap.py eight_schools free --fixed 16 --seeds 12
    OMP_NUM_THREADS=1 python benchmarks/adaptive_gap.py low_dim_gauss_mix free --fixed 16 \
        --first-seed 50 --seeds 150 --without-forced
    OMP_NUM_THREADS=1 python benchmarks/adaptive_gap.py gp_pois_regr laplace --fixed 0 \
        --steps 1000 --seeds 30 --without-forced
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import attrs  # noqa: E402
import torch  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.benchmarking import harness  # noqa: E402
from gaussspec.benchmarking.adapter_suites import load_bench_module  # noqa: E402
from gaussspec.benchmarking.allocator import pin_glibc_heap  # noqa: E402
from gaussspec.benchmarking.harness import rotated  # noqa: E402
from gaussspec.benchmarking.report import Column, markdown_table  # noqa: E402

torch.set_num_threads(1)


@attrs.frozen
class ForcedDraftLength(gs.AdaptiveDraftLength):
    """The adaptive rule, every decision and update run and timed, drafting ``forced`` always.

    A round drafts ``min(forced, remaining - 1)``; at the chain's last step the rule's own
    action (a plain step) stands, and so does its first burst of plain steps (the start-up's
    probe, G6, which prices ``C(n)``): without it the rule, never seeing a plain step, asks for
    the probe every round and never keeps a decision (G9), so the forced run would pay a
    decision a round where the rule pays one every few rounds (arK, Laplace drafter, g = 32:
    1485 decisions in 1485 rounds against 32 in 162). ``probe=False`` forces every round but
    the last (``per_chain_lengths`` counts each chain's steps from the rounds alone).
    """

    forced: int = attrs.field(default=16, validator=gs.adaptive._positive, kw_only=True)
    probe: bool = attrs.field(default=True, kw_only=True)  # the start-up's plain probe runs

    def start(self, num_chains: int) -> gs.adaptive.AdaptiveState:
        state = super().start(num_chains)
        choose = state.choose

        def forced_choose(n: int, frozen: bool, remaining: int) -> tuple[int, int]:
            action = choose(n, frozen, remaining)  # the rule's work, its answer set aside
            if remaining <= 1 or (self.probe and action[0] == 0 and not state.plain_measured):
                return action  # the last step, or the start-up's probe (G6)
            return min(self.forced, remaining - 1), 0

        state.choose = forced_choose
        return state


def _paired_ratios(numerators: list[float], denominators: list[float]) -> dict:
    """``numerator / denominator - 1`` over paired runs: its mean with the standard error, and
    its median (one run slowed by the machine moves the mean by its share, not the median)."""
    ratios = [a / b - 1.0 for a, b in zip(numerators, denominators)]
    error = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else math.nan
    return {"mean": statistics.mean(ratios), "error": error,
            "median": statistics.median(ratios)}


def measure(posterior: str, drafter_name: str, fixed: int, seeds: int, steps: int,
            max_draft_length: int, first_seed: int = 1000, with_forced: bool = True) -> dict:
    """Run the contenders (``fixed``, ``forced`` unless ``with_forced`` is False, ``rule``) on
    ``seeds`` paired seeds from ``first_seed``, in rotated order; returns the rows and the
    split. ``fixed = 0`` is the plain chain (then ``with_forced`` must be False: the rule cannot
    be forced to plain steps)."""
    if fixed < 0 or (fixed == 0 and with_forced):
        raise ValueError(f"fixed must be a draft length >= 1, or 0 (the plain chain) without the "
                         f"forced rule; got fixed={fixed}, with_forced={with_forced}")
    name, setup, drafter = load_bench_module("langevin").one_chain_setup(posterior, drafter_name,
                                                                          steps)
    contenders = {"fixed": harness.speculative(setup.target, drafter, fixed,
                                               label=f"fixed g={fixed}") if fixed
                  else harness.plain()}
    if with_forced:
        forced = ForcedDraftLength(max_draft_length=max_draft_length, forced=fixed)
        contenders["forced"] = harness.adaptive(setup.target, drafter, policy=forced,
                                                label=f"rule forced to g={fixed}")
    contenders["rule"] = harness.adaptive(setup.target, drafter, max_draft_length, label="rule")
    harness.warm_up()  # every compiled path, the policy's plain-burst report included (a run
    # whose rule first took a plain step compiled it: 405 against 200 ms CPU, one arK seed)
    for contender in contenders.values():  # warm-up: compilations, first-call costs
        harness._run_once(contender, setup.target, setup.x0, 5)
    gc.collect()
    runs = {key: [] for key in contenders}
    for index, seed in enumerate(range(first_seed, first_seed + seeds)):
        for key in rotated(list(contenders), index):
            stats, wall, cpu = harness._run_once(contenders[key], setup.target, setup.x0, seed)
            runs[key].append({"cpu_s": cpu, "wall_s": wall, "rounds": stats.rounds,
                              "block_efficiency": stats.block_efficiency,
                              "mean_draft_length":  # drafted positions per chain-round
                                  stats.draft_evaluations / max(stats.chain_rounds, 1)})
    rows = []
    for key, contender in contenders.items():
        values = runs[key]
        cpu = [v["cpu_s"] for v in values]
        rows.append({
            "contender": contender.label,
            "cpu_ms": statistics.mean(cpu) * 1e3,
            "wall_ms": statistics.median(v["wall_s"] for v in values) * 1e3,
            "rounds": statistics.mean(v["rounds"] for v in values),
            "block_efficiency": statistics.mean(v["block_efficiency"] for v in values),
            "mean_draft_length": statistics.mean(v["mean_draft_length"] for v in values),
            "cpu_us_per_round": statistics.mean(v["cpu_s"] / v["rounds"] for v in values) * 1e6,
            "runs": values,
        })
    cpu = {key: [v["cpu_s"] for v in values] for key, values in runs.items()}
    split = {"total": _paired_ratios(cpu["rule"], cpu["fixed"])}  # rule / fixed - 1
    if with_forced:
        split = {"own_work": _paired_ratios(cpu["forced"], cpu["fixed"]),  # forced / fixed - 1
                 "choice": _paired_ratios(cpu["rule"], cpu["forced"]),  # rule / forced - 1
                 **split}
    return {"posterior": name, "drafter": drafter_name, "fixed": fixed, "steps": steps,
            "seeds": seeds, "first_seed": first_seed, "rows": rows, "split": split}


def report(result: dict) -> str:
    """The markdown report: the contenders, then the split of the gap."""
    columns = [Column("contender", "contender"), Column("CPU ms (mean)", "cpu_ms", "{:.1f}"),
               Column("wall ms (median)", "wall_ms", "{:.1f}"),
               Column("rounds", "rounds", "{:.0f}"),
               Column("block eff.", "block_efficiency", "{:.2f}"),
               Column("mean g", "mean_draft_length", "{:.2f}"),
               Column("CPU us / round", "cpu_us_per_round", "{:.0f}")]
    split_rows = [{"part": part, **ratios} for part, ratios in result["split"].items()]
    split_columns = [Column("part of the gap (CPU time)", "part"),
                     Column("mean", "mean", "{:+.1%}"), Column("s.e.", "error", "{:.1%}"),
                     Column("median", "median", "{:+.1%}")]
    against = f"fixed g = {result['fixed']}" if result["fixed"] else "the plain chain"
    head = (f"Adaptive rule against {against}: {result['posterior']}, "
            f"{result['drafter']} drafter, one chain of {result['steps']} steps, "
            f"{result['seeds']} paired seeds from {result['first_seed']}, in rotated order. "
            + ("own_work = forced / fixed - 1, choice = rule / forced - 1, " if "own_work" in
               result["split"] else "")
            + "total = rule / fixed - 1 (means and medians of per-seed ratios).")
    return "\n\n".join([head, markdown_table(columns, result["rows"]),
                        markdown_table(split_columns, split_rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("posterior", help="a posterior name (prefix) of the Langevin adapter")
    parser.add_argument("drafter", choices=["free", "frozen", "laplace"])
    parser.add_argument("--fixed", type=int, default=16,
                        help="the fixed draft length compared; 0: the plain chain (with "
                             "--without-forced)")
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=1000,
                        help="the first of the paired seeds (the langevin suite's repeats use 50+)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--max-draft-length", type=int, default=32)
    parser.add_argument("--without-forced", action="store_true",
                        help="run the fixed length and the rule alone (the total gap only)")
    parser.add_argument("--allocator", choices=["pinned", "default"], default="pinned",
                        help="pin glibc's heap thresholds as gaussspec bench does (default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.allocator == "pinned":
        pin_glibc_heap()
    result = measure(args.posterior, args.drafter, args.fixed, args.seeds, args.steps,
                     args.max_draft_length, args.first_seed, not args.without_forced)
    text = report(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (f"adaptive_gap_{result['posterior']}_{args.drafter}_g{args.fixed}"
                       + ("_total" if args.without_forced else ""))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
