"""Decision quality of the adaptive draft length with every cost known: a simulated chain.

Wall-clock comparisons of one Langevin chain spread by several percent from run to run (the
machine, and the chain's own block efficiency), more than the differences between two versions
of the rule. This script takes both out: a simulated chain accepts each drafted position with
probability ``q`` (independently, so the number accepted is geometric, censored at ``g``), a round
costs a known ``A + B g`` and a plain step ``P``, and the rule sees those costs with 5% lognormal
noise, as it would measure them; a round that changes the draft length costs ``--switch-cost-us``
more (default 100 us; fresh noise draws and cold buffers: 130-250 us measured on eight_schools).
The acceptance may switch between two values every ``period`` chain-steps (a chain that moves
between regions). The score is the run's goodput (chain-steps per modelled second) against the
best fixed draft length's, over many seeds; also the rule's mean draft length, its spread within
a run (how much it wanders) and how often it changes.

Run (variants are ``AdaptiveDraftLength`` settings, ``""`` for the defaults):

    python benchmarks/adaptive_simulation.py --acceptance 0.89 --seeds 30 --variant ""
    python benchmarks/adaptive_simulation.py --acceptance 0.95 --switch-to 0.75 --period 500 \\
        --seeds 30 --variant "" --variant decay=0.98
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.benchmarking.harness import adaptive_settings  # noqa: E402
from gaussspec.benchmarking.report import Column, markdown_table  # noqa: E402

# A one-chain Langevin round's costs (eight_schools on this machine): the target call, the
# drafting phase and the engine's own time; a plain step.
CALL_S, CALL_PER_STATE_S = 390e-6, 1e-6
DRAFT_FIXED_S, DRAFT_PER_STEP_S = 30e-6, 16e-6
ENGINE_S, ENGINE_PER_POSITION_S = 250e-6, 6e-6
PLAIN_ENGINE_S = 100e-6
SWITCH_S = 100e-6  # default extra cost of a round whose draft length differs from the last's
NOISE = 0.05  # lognormal sigma of what the rule measures


def _accepted(rng: np.random.Generator, q: float, g: int) -> int:
    """Drafts accepted in a round of ``g``: each position with probability ``q`` until one fails."""
    passed = rng.random(g) < q
    return g if passed.all() else int(np.argmin(passed))


def simulate(policy: gs.AdaptiveDraftLength | None, fixed: int, seed: int, steps: int,
             acceptance: float, switch_to: float, period: int,
             switch_seconds: float = SWITCH_S) -> tuple[float, float, float, float]:
    """One chain of ``steps`` chain-steps under the rule (``policy``) or a fixed draft length.

    Returns:
        ``(goodput, mean_g, sd_g, switches)``: chain-steps per modelled second, the mean and
        standard deviation of the rounds' draft lengths, and the switches per 100 rounds.
    """
    rng = np.random.default_rng(seed)
    state = policy.start(1) if policy is not None else None
    seconds, done, lengths = 0.0, 0, []
    one = np.arange(1)
    while done < steps - 1:
        remaining = steps - done
        if state is None:
            g, burst = min(fixed, remaining - 1), 0
        else:
            g, burst = state.choose(1, False, remaining)
        if g == 0:
            step = CALL_S + CALL_PER_STATE_S + PLAIN_ENGINE_S
            state.update_plain(1, burst, (CALL_S + CALL_PER_STATE_S) * burst * rng.lognormal(
                0, NOISE), step * burst * rng.lognormal(0, NOISE))
            seconds, done = seconds + step * burst, done + burst
            continue
        q = switch_to if switch_to and (done // period) % 2 else acceptance
        tau = _accepted(rng, q, g)
        call = CALL_S + CALL_PER_STATE_S * (g + 1)
        drafting = DRAFT_FIXED_S + DRAFT_PER_STEP_S * g
        engine = ENGINE_S + ENGINE_PER_POSITION_S * g
        if lengths and g != lengths[-1]:
            engine += switch_seconds
        if state is not None:
            seen_call = call * rng.lognormal(0, NOISE)
            seen_drafting = drafting * rng.lognormal(0, NOISE)
            seen_round = seen_call + seen_drafting + engine * rng.lognormal(0, NOISE)
            state.update(one, np.array([tau]), np.array([g]), g + 1, seen_call,
                         seen_drafting / 2, g, seen_round, seen_drafting)
        seconds += call + drafting + engine
        done += 1 + tau
        lengths.append(g)
    switches = sum(a != b for a, b in zip(lengths, lengths[1:])) * 100.0 / max(len(lengths), 1)
    return done / seconds, float(np.mean(lengths)), float(np.std(lengths)), switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acceptance", type=float, default=0.89)
    parser.add_argument("--switch-to", type=float, default=0.0,
                        help="a second acceptance, taken every other --period chain-steps")
    parser.add_argument("--period", type=int, default=500)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--fixed", type=int, nargs="+", default=[8, 12, 16, 20, 24, 32])
    parser.add_argument("--max-draft-length", type=int, default=32)
    parser.add_argument("--switch-cost-us", type=float, default=SWITCH_S * 1e6,
                        help="extra cost of a round that changes the draft length")
    parser.add_argument("--variant", action="append", default=None,
                        help='AdaptiveDraftLength settings, e.g. "decay=0.98"; "" = defaults')
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/simulation"))
    args = parser.parse_args()
    variants = args.variant if args.variant is not None else [""]
    world = (args.acceptance, args.switch_to, args.period, args.switch_cost_us * 1e-6)
    fixed = {g: np.mean([simulate(None, g, s, args.steps, *world)[0] for s in range(args.seeds)])
             for g in args.fixed}
    best_g = max(fixed, key=fixed.get)
    rows = [{"contender": f"fixed g={g}", "vs_best_fixed": rate / fixed[best_g] - 1.0,
             "standard_error": None, "mean_g": g, "sd_g_within_run": 0.0,
             "switches_per_100_rounds": 0.0}
            for g, rate in fixed.items()]
    for variant in variants:
        policy = gs.AdaptiveDraftLength(max_draft_length=args.max_draft_length,
                                        **adaptive_settings(variant))
        runs = np.array([simulate(policy, 0, s, args.steps, *world) for s in range(args.seeds)])
        rows.append({"contender": f"adaptive {variant or 'defaults'}",
                     "vs_best_fixed": runs[:, 0].mean() / fixed[best_g] - 1.0,
                     "standard_error": runs[:, 0].std() / np.sqrt(args.seeds) / fixed[best_g],
                     "mean_g": runs[:, 1].mean(), "sd_g_within_run": runs[:, 2].mean(),
                     "switches_per_100_rounds": runs[:, 3].mean()})
    change = f", switching to {args.switch_to} every {args.period} steps" if args.switch_to else ""
    change += f", {args.switch_cost_us:g} us a change of draft length"
    title = (f"Simulated one-chain runs, acceptance {args.acceptance}{change}, {args.steps} steps, "
             f"{args.seeds} seeds; best fixed g = {best_g}.")
    columns = [Column("contender", "contender", "{}"),
               Column("goodput vs best fixed", "vs_best_fixed", "{:+.2%}"),
               Column("s.e.", "standard_error", "{:.2%}"),
               Column("mean g", "mean_g", "{:.1f}"),
               Column("sd of g within a run", "sd_g_within_run", "{:.1f}"),
               Column("switches per 100 rounds", "switches_per_100_rounds", "{:.1f}")]
    table = markdown_table(columns, rows)
    print(title + "\n\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"adaptive_simulation_q{args.acceptance}" + (
        f"_to{args.switch_to}_every{args.period}" if args.switch_to else "")
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"acceptance": args.acceptance, "switch_to": args.switch_to, "period": args.period,
         "switch_cost_us": args.switch_cost_us,
         "steps": args.steps, "seeds": args.seeds, "best_fixed": best_g, "rows": rows},
        indent=2))
    (args.out / f"{stem}.md").write_text(title + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
