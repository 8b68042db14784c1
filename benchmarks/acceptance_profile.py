"""Acceptance by draft position on the Langevin posteriors: what the adaptive rule estimates.

The adaptive draft length (gaussspec/adaptive.py, G3) prices a round of length ``g`` by the
survival curve ``S_j = P(tau >= j)``, estimated position by position from one chain's rounds
(Kaplan-Meier, conditional acceptances ``q_j = S_j / S_{j-1}``), and extrapolates the positions
it has not drafted lately from the ones before. Two facts decide how well that can work, and
this script measures both, one chain per posterior and drafter at a fixed draft length:

* the profile of ``q_j`` over positions: flat (every position is the same draw, and pooling
  them would lose nothing), falling or rising (pooling far back misprices the tail). Reported:
  ``q_j`` pooled over position bands, and the slope of a least-squares line through ``q_j``
  weighted by each position's drafts, per ten positions, with its standard error;
* whether ``S_j`` depends on the round's length ``g`` (block verification decides a block as a
  whole: ``h_i`` of ALGORITHMS section 5 differs at the block's last position): ``S_j`` at
  ``j = --compare-at`` from runs at each of ``--compare-lengths`` and at ``--draft-length``.
  The rule pools rounds of every length into one curve, so a strong dependence would bias it.

Counts come from the sampler's own counters (``accepted_by_position``, ``drafted_by_position``)
summed over ``--seeds`` runs of ``--steps`` steps. No clock is read: the numbers are the same on
any machine for the same seeds.

Run:

    OMP_NUM_THREADS=1 python benchmarks/acceptance_profile.py
    OMP_NUM_THREADS=1 python benchmarks/acceptance_profile.py --posteriors eight_schools \\
        --drafters free --seeds 6 --compare-lengths 4 8 16 24

Writes ``acceptance_profile.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.benchmarking.adapter_suites import load_bench_module  # noqa: E402
from gaussspec.benchmarking.report import Column, markdown_table  # noqa: E402

torch.set_num_threads(1)

BANDS = ((1, 1), (2, 8), (9, 16), (17, 24), (25, 32))  # positions pooled in the report


def counts(setup, drafter, draft_length: int, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(accepted, drafted)`` by position 1..draft_length, summed over one run per seed."""
    accepted, drafted = np.zeros(draft_length), np.zeros(draft_length)
    sampler = gs.SpeculativeSampler(setup.target, drafter, draft_length)
    for seed in seeds:
        stats = sampler.sample(setup.x0, generator=torch.Generator().manual_seed(seed)).stats
        accepted += stats.accepted_by_position
        drafted += stats.drafted_by_position
    return accepted, drafted


def profile(accepted: np.ndarray, drafted: np.ndarray) -> dict:
    """The conditional acceptances and their summaries from one length's counts.

    ``S_j = accepted_j / drafted_j`` (the chain's last rounds draft fewer positions), ``q_j =
    S_j / S_{j-1}``; a band's ``q`` pools its positions (hits over rounds at risk, ``at_risk_j =
    S_{j-1} drafted_j``); the slope is the weighted least-squares line through ``q_j`` (weights
    ``at_risk_j``), its standard error from ``q (1 - q) / at_risk_j``.
    """
    survival = accepted / np.maximum(drafted, 1.0)  # S_j
    before = np.concatenate([[1.0], survival[:-1]])  # S_{j-1}
    at_risk = before * drafted  # rounds that drafted j having accepted j - 1
    hits = accepted
    q = np.where(at_risk > 0, hits / np.maximum(at_risk, 1e-12), np.nan)  # q_j
    bands = {}
    for first, last in BANDS:
        if last > len(q):
            continue
        risk = at_risk[first - 1:last].sum()
        bands[f"q_{first}" if first == last else f"q_{first}-{last}"] = (
            float(hits[first - 1:last].sum() / risk) if risk > 0 else None)
    j = np.arange(1, len(q) + 1, dtype=float)
    used = at_risk > 0
    w, x, y = at_risk[used], j[used], q[used]
    mean_x, mean_y = np.average(x, weights=w), np.average(y, weights=w)
    sxx = float(np.sum(w * (x - mean_x) ** 2))
    slope = float(np.sum(w * (x - mean_x) * (y - mean_y)) / sxx) if sxx > 0 else math.nan
    error = math.sqrt(mean_y * (1.0 - mean_y) / sxx) if sxx > 0 else math.nan
    return {"survival": survival.tolist(), "conditional": q.tolist(), "bands": bands,
            "slope_per_10": 10.0 * slope, "slope_error_per_10": 10.0 * error,
            "block_efficiency": float(1.0 + survival.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posteriors", nargs="+", default=None,
                        help="posterior names (prefixes); default: all eight")
    parser.add_argument("--drafters", nargs="+", default=["free", "laplace"],
                        choices=["free", "frozen", "laplace"])
    parser.add_argument("--draft-length", type=int, default=32)
    parser.add_argument("--compare-lengths", type=int, nargs="*", default=[4, 8, 16],
                        help="shorter lengths whose S_j is compared with --draft-length's")
    parser.add_argument("--compare-at", type=int, default=4,
                        help="the position j of that comparison (at most the shortest length)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=50)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.compare_lengths and args.compare_at > min(args.compare_lengths):
        parser.error(f"--compare-at {args.compare_at} exceeds the shortest compared length "
                     f"{min(args.compare_lengths)}")
    bench = load_bench_module("langevin")
    prefixes = args.posteriors or [n.split("-")[0] for n in bench.langevin.posterior_names()]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    rows = []
    for prefix in prefixes:
        short = 1000 if prefix.startswith("gp_pois") else args.steps  # as the langevin suite
        for kind in args.drafters:
            name, setup, drafter = bench.one_chain_setup(prefix, kind, short)
            row = {"posterior": name.split("-")[0], "drafter": kind, "steps": short,
                   **profile(*counts(setup, drafter, args.draft_length, seeds))}
            at = args.compare_at - 1
            row["survival_at_j_by_length"] = {str(args.draft_length): row["survival"][at]}
            for length in args.compare_lengths:
                accepted, drafted = counts(setup, drafter, length, seeds)
                row["survival_at_j_by_length"][str(length)] = float(accepted[at] / drafted[at])
            rows.append(row)
            print(f"{row['posterior']} {kind}: q by band {row['bands']}, slope "
                  f"{row['slope_per_10']:+.3f} +- {row['slope_error_per_10']:.3f} per 10 "
                  f"positions; S_{args.compare_at} by g {row['survival_at_j_by_length']}",
                  flush=True)
    band_names = [f"q_{a}" if a == b else f"q_{a}-{b}" for a, b in BANDS if b <= args.draft_length]
    for row in rows:
        row.update({key: row["bands"].get(key) for key in band_names})
        spread = row["survival_at_j_by_length"]
        row["S_by_g"] = ", ".join(f"{spread[g]:.3f}" for g in sorted(spread, key=int))
    columns = ([Column("posterior", "posterior"), Column("drafter", "drafter"),
                Column("block eff.", "block_efficiency", "{:.2f}")]
               + [Column(name.replace("_", " "), name, "{:.3f}") for name in band_names]
               + [Column("slope of q_j per 10 positions", "slope_per_10", "{:+.3f}"),
                  Column("s.e.", "slope_error_per_10", "{:.3f}"),
                  Column(f"S_{args.compare_at} at g = "
                         + ", ".join(map(str, sorted([*args.compare_lengths, args.draft_length]))),
                         "S_by_g")])
    head = (f"Acceptance by draft position: one chain per posterior, fixed draft length "
            f"{args.draft_length}, block verification, {args.seeds} runs of {args.steps} steps "
            f"(gp_pois_regr 1000) from seed {args.first_seed}. q_a-b: the conditional acceptance "
            f"pooled over positions a..b.")
    text = head + "\n\n" + markdown_table(columns, rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "acceptance_profile"
    stem.with_suffix(".json").write_text(json.dumps(
        {"draft_length": args.draft_length, "seeds": seeds, "steps": args.steps,
         "compare_at": args.compare_at, "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
