"""Decision replay of the adaptive draft length: its choices priced without timing noise.

One Langevin chain's wall-clock spreads 10-40% from run to run on shared cores, and its block
efficiency 3-6% (the path differs from run to run, and between the contenders of one repeat), so
a few repeats cannot tell a policy change worth 2% from noise. This script prices every run by
one cost model instead of its own clock: a round of draft length g costs ``A + B g`` and a plain
step ``P``, with A, B and P fitted to fixed-length and plain runs of the same process (CPU time,
medians of ``--cost-runs`` interleaved runs each). Many seeds then compare what the adaptive rule
chose (its draft lengths and plain steps, given the acceptance its chain met) against each fixed
draft length. The rule itself still runs on measured times, as in real use; what the replay
leaves out is the engine's cost beyond the fitted line and the clock's noise.

Reported, per contender: the mean modelled time over the seeds, its standard error, and the
change against the best fixed length and against plain steps. Writes JSON and a markdown table.

``--expected`` takes the chain's acceptance luck out too: each round is credited the steps it
advances on average at its length, ``1 + sum_{j<=g} S_j`` with ``S_j`` counted over the longest
fixed length's runs (which must be ``--max-draft-length``; block verification's ``S_j`` barely
depends on the round's length, see ``acceptance_profile.py``), and a run scores its expected
goodput against the best length's, every ``g`` from 1 to the longest and plain steps priced by
the same model. The loss is split between the rule's first ``--start-actions`` actions (its
start-up, while one chain's counts are few) and the rest, each as a share of the run's time.

Run (variants are ``AdaptiveDraftLength`` settings, ``""`` for the defaults):

    OMP_NUM_THREADS=1 python benchmarks/adaptive_replay.py eight_schools free --seeds 12 \\
        --fixed 12 16 --variant "" --variant switch_margin=0.0
    OMP_NUM_THREADS=1 python benchmarks/adaptive_replay.py eight_schools free --seeds 16 \\
        --fixed 4 8 12 16 20 24 32 --expected
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import attrs  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.benchmarking import harness  # noqa: E402
from gaussspec.benchmarking.adapter_suites import load_bench_module  # noqa: E402
from gaussspec.benchmarking.report import Column, markdown_table  # noqa: E402

torch.set_num_threads(1)


@attrs.frozen
class RecordingPolicy(gs.AdaptiveDraftLength):
    """An :class:`~gaussspec.AdaptiveDraftLength` whose runs log ``(kind, g or plain steps)``."""

    log: list = attrs.field(factory=list, eq=False)

    def start(self, num_chains):
        state = super().start(num_chains)
        update, update_plain = state.update, state.update_plain

        def recording_update(chains, tau, lengths, *args, timed=True, frozen_call_time=0.0):
            self.log.append(("round", int(np.max(lengths))))
            update(chains, tau, lengths, *args, timed=timed, frozen_call_time=frozen_call_time)

        def recording_update_plain(n, steps, *args, timed=True):
            self.log.append(("plain", int(steps)))
            update_plain(n, steps, *args, timed=timed)

        state.update, state.update_plain = recording_update, recording_update_plain
        return state


def fit_costs(setup, drafter, fixed: list[int], runs: int = 5) -> tuple[float, float, float]:
    """``(A, B, P)``: CPU seconds of a round ``A + B g`` and of a plain step.

    Each fixed length and the plain chain run ``runs`` times by :func:`harness.measure`
    (interleaved, so that the machine's drift falls on all of them alike, after a warm-up run
    each); a length's round time is the median over its runs of CPU time per round. CPU time, as
    ``adaptive_gap.py``: less disturbed by other jobs than the wall clock (wall-clock runs, one
    length after the other, fitted eight_schools' per-position cost at 18 us over three lengths
    and 32 us over seven on 2026-12-02; CPU time over the seven, interleaved, read 20).
    """
    lengths = sorted(set(fixed))
    contenders = [harness.plain()] + [harness.speculative(setup.target, drafter, g)
                                      for g in lengths]
    plain, *rows = harness.measure(setup.target, setup.x0, contenders, runs, seed=8)
    per_round = [statistics.median(cpu / rounds for cpu, rounds in zip(row["cpu_s_all"],
                                                                        row["rounds_all"]))
                 for row in rows]
    if len(lengths) > 1:
        slope, intercept = np.polyfit(lengths, per_round, 1)  # A + B g
    else:
        slope, intercept = 0.0, per_round[0]
    plain_step = statistics.median(plain["cpu_s_all"]) / setup.target.num_steps
    return float(intercept), float(slope), float(plain_step)


def expected_scores(log: list, survival: np.ndarray, a: float, b: float, p: float,
                    start_actions: int) -> dict:
    """One run's expected goodput against the best length's, and where it lost time.

    A round of length ``g`` is credited ``1 + sum_{j<=g} S_j`` steps and costs ``a + b g``; a
    burst of ``k`` plain steps ``k`` steps and ``k p``. The best rate is the best of every ``g``
    and of plain steps. A run's loss is its time less the time the best rate needs for its steps,
    as a share of the latter; split between the first ``start_actions`` actions and the rest.
    """
    steps_at = np.concatenate([[1.0], 1.0 + np.cumsum(survival)])  # 1 + sum_{j<=g} S_j (G1)
    lengths = np.arange(len(steps_at))
    rates = steps_at[1:] / (a + b * lengths[1:])
    best_rate = max(float(rates.max()), 1.0 / p)
    steps, seconds, lost = 0.0, 0.0, [0.0, 0.0]
    for index, (kind, size) in enumerate(log):
        advance, cost = (steps_at[size], a + b * size) if kind == "round" else (size, p * size)
        steps, seconds = steps + advance, seconds + cost
        lost[index >= start_actions] += cost - advance / best_rate
    ideal = steps / best_rate
    rounds = [size for kind, size in log if kind == "round"]
    return {"vs_best": steps / seconds / best_rate - 1.0, "start_loss": lost[0] / ideal,
            "later_loss": lost[1] / ideal, "mean_g": float(np.mean(rounds)) if rounds else 0.0,
            "best_g": int(rates.argmax()) + 1 if rates.max() >= 1.0 / p else 0}


def expected_report(name: str, args, a: float, b: float, p: float, survival: np.ndarray,
                    logs: dict) -> None:
    """Print and write the ``--expected`` table: each variant's mean expected goodput."""
    rows = []
    for label, runs in logs.items():
        scores = [expected_scores(log, survival, a, b, p, args.start_actions) for log in runs]
        mean = {key: statistics.mean(s[key] for s in scores) for key in scores[0]}
        spread = statistics.stdev(s["vs_best"] for s in scores) if len(scores) > 1 else math.nan
        rows.append({"contender": label, **mean, "standard_error": spread / len(scores) ** 0.5,
                     "sd_mean_g": statistics.pstdev(s["mean_g"] for s in scores),
                     "runs": scores})
    best_g = rows[0]["runs"][0]["best_g"]
    columns = [Column("contender", "contender"),
               Column("expected goodput vs best", "vs_best", "{:+.2%}"),
               Column("s.e.", "standard_error", "{:.2%}"),
               Column(f"lost in the first {args.start_actions} actions", "start_loss", "{:.2%}"),
               Column("lost after", "later_loss", "{:.2%}"),
               Column("mean g", "mean_g", "{:.1f}"),
               Column("sd of mean g between runs", "sd_mean_g", "{:.1f}")]
    head = (f"Expected-steps replay, {name}, {args.drafter} drafter, {args.steps} steps, "
            f"{args.seeds} seeds; round {a * 1e3:.3f} + {b * 1e3:.4f} g ms, plain step "
            f"{p * 1e3:.4f} ms; S_j from the g = {max(args.fixed)} runs (block efficiency "
            f"{1.0 + survival.sum():.2f}); best: "
            + (f"g = {best_g}." if best_g else "plain steps."))
    table = markdown_table(columns, rows)
    print(head + "\n\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"adaptive_replay_expected_{name}_{args.drafter}"
    stem.with_suffix(".json").write_text(json.dumps(
        {"posterior": name, "drafter": args.drafter, "steps": args.steps, "seeds": args.seeds,
         "round_intercept_s": a, "round_per_position_s": b, "plain_step_s": p,
         "survival": survival.tolist(), "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(head + "\n\n" + table + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("posterior", help="a posterior name (prefix) of the Langevin adapter")
    parser.add_argument("drafter", choices=["free", "frozen", "laplace"])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--fixed", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--max-draft-length", type=int, default=32)
    parser.add_argument("--variant", action="append", default=None,
                        help='AdaptiveDraftLength settings, e.g. "decay=0.97" ("" = defaults)')
    parser.add_argument("--cost-runs", type=int, default=5,
                        help="interleaved runs of each fixed length and of plain steps that fit "
                             "the cost model")
    parser.add_argument("--expected", action="store_true",
                        help="credit each round its length's expected steps (no acceptance luck)")
    parser.add_argument("--start-actions", type=int, default=100,
                        help="with --expected: the rule's first actions, reported apart")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    variants = args.variant if args.variant is not None else [""]
    if args.expected and max(args.fixed) != args.max_draft_length:
        parser.error(f"--expected prices every length by the longest fixed length's runs: "
                     f"--fixed must include --max-draft-length ({args.max_draft_length})")

    name, setup, drafter = load_bench_module("langevin").one_chain_setup(
        args.posterior, args.drafter, args.steps)
    a, b, p = fit_costs(setup, drafter, args.fixed, args.cost_runs)

    def modelled(log):  # the cost model on a run's actions
        return sum(a + b * size if kind == "round" else p * size for kind, size in log)

    times = {f"fixed g={g}": [] for g in args.fixed}
    policies = {}
    for text in variants:
        label = f"adaptive {text or 'defaults'}"
        policy = RecordingPolicy(**{"max_draft_length": args.max_draft_length,
                                    **harness.adaptive_settings(text)})
        contender = harness.adaptive(setup.target, drafter, label=label, policy=policy)
        harness._run_once(contender, setup.target, setup.x0, 5)  # warm-up: its compilation
        policies[label], times[label] = (policy, contender), []
    fixed = {g: harness.speculative(setup.target, drafter, g) for g in args.fixed}
    longest = max(args.fixed)
    accepted, drafted = np.zeros(longest), np.zeros(longest)  # the longest length's S_j
    logs = {label: [] for label in policies}
    for seed in range(1000, 1000 + args.seeds):
        for g, contender in fixed.items():
            stats = harness._run_once(contender, setup.target, setup.x0, seed)[0]
            times[f"fixed g={g}"].append(stats.rounds * (a + b * g))
            if g == longest:
                accepted += stats.accepted_by_position
                drafted += stats.drafted_by_position
        for label, (policy, contender) in policies.items():
            policy.log.clear()
            harness._run_once(contender, setup.target, setup.x0, seed)
            times[label].append(modelled(policy.log))
            logs[label].append(list(policy.log))
    if args.expected:
        expected_report(name, args, a, b, p, accepted / np.maximum(drafted, 1.0), logs)
        return

    plain_time = p * args.steps
    best = min(statistics.mean(v) for k, v in times.items() if k.startswith("fixed"))
    rows = []
    for label, values in times.items():
        mean = statistics.mean(values)
        error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else math.nan
        rows.append({"contender": label, "modelled_ms": mean * 1e3, "standard_error": error / mean,
                     "vs_best_fixed": mean / best - 1, "vs_plain": mean / plain_time - 1,
                     "runs_s": values})
    columns = [Column("contender", "contender"), Column("modelled ms", "modelled_ms", "{:.1f}"),
               Column("s.e.", "standard_error", "{:.1%}"),
               Column("vs best fixed", "vs_best_fixed", "{:+.1%}"),
               Column("vs plain", "vs_plain", "{:+.1%}")]
    table = markdown_table(columns, rows)
    head = (f"Decision replay, {name}, {args.drafter} drafter, {args.steps} steps, "
            f"{args.seeds} seeds; round {a * 1e3:.3f} + {b * 1e3:.4f} g ms, plain step "
            f"{p * 1e3:.4f} ms (CPU time, fitted to this process's fixed-length and plain "
            f"runs).")
    print(head + "\n\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"adaptive_replay_{name}_{args.drafter}"
    stem.with_suffix(".json").write_text(json.dumps(
        {"posterior": name, "drafter": args.drafter, "steps": args.steps,
         "seeds": args.seeds, "round_intercept_s": a, "round_per_position_s": b,
         "plain_step_s": p, "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(head + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
