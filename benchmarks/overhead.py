"""Engine overhead: the share of wall-clock outside kernel calls (issue: < 5%).

Setting: d = 3072 (a 3x32x32 image), B = 8 chains, draft length 4, float32 states, and a target
mean whose call costs 5-10 ms for the B = 8 states of one plain step (a two-layer score network
3072 -> 2048 -> 3072 on one CPU thread; the table reports the measured cost; it grows with the
batch like real compute, so a round's call on about 37 states costs about 15 ms). The
speculative sampler uses the free drafter and block verification.

Reported: per-round wall-clock split into target calls, draft calls and the engine's own time
(drafting bookkeeping, verification, residual draws, noise), median of repeats, plus the plain
chain measured in the same run. Writes JSON and a markdown table to benchmarks/results/.

Run: OMP_NUM_THREADS=1 python benchmarks/overhead.py [--repeats 3] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import gaussspec as gs  # noqa: E402

torch.set_num_threads(1)


class ScoreNetworkULA(gs.GaussianKernel):
    """ULA with a two-layer network as the score: x' ~ N(x + h s(x), 2h I)."""

    def __init__(self, dimension=3072, hidden=2048, step_size=0.01, num_steps=200, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(dimension, hidden, generator=generator) / dimension**0.5
        self.w2 = torch.randn(hidden, dimension, generator=generator) / hidden**0.5 * 0.5
        self.h, self.num_steps, self.event_shape = step_size, num_steps, (dimension,)
        self._covariance = gs.IsotropicCovariance((2 * step_size) ** 0.5)

    def covariance(self, t):
        return self._covariance

    def evaluate(self, x, t):
        return -x + torch.tanh(x @ self.w1) @ self.w2  # the expensive score network

    def mean_from(self, x, t, score):
        return x + self.h * score


def _run(kind, kernel, x0, seed, draft_length):
    generator = torch.Generator().manual_seed(seed)
    if kind == "plain":
        return gs.sample_chain(kernel, x0, generator=generator).stats
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length, "block")
    return sampler.sample(x0, generator=generator).stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--draft-length", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=2048,
                        help="width of the score network: 2048 costs 5-10 ms per call of 8 "
                             "states, 10240 about 5 ms per state (on one core)")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    kernel = ScoreNetworkULA(hidden=args.hidden, num_steps=args.steps)
    x0 = torch.zeros(args.chains, 3072)
    _run("speculative", kernel, x0[:2], 0, args.draft_length)  # compile numba, warm caches
    rows = {"plain": [], "speculative": []}
    for repeat in range(args.repeats):  # interleaved: plain, speculative, plain, ...
        for kind in rows:
            rows[kind].append(_run(kind, kernel, x0, repeat, args.draft_length))
    report = {"setting": {"dimension": 3072, "chains": args.chains, "draft_length": args.draft_length,
                          "num_steps": args.steps, "drafter": "free", "verification": "block",
                          "dtype": "float32", "threads": 1, "hidden": args.hidden,
                          "target_call_ms_batch_of_chains": _time_call(kernel, x0)}}
    for kind, stats_list in rows.items():
        share = [s.overhead_time / s.wall_time for s in stats_list]
        report[kind] = {
            "wall_time_s": statistics.median(s.wall_time for s in stats_list),
            "target_time_s": statistics.median(s.target_time for s in stats_list),
            "draft_time_s": statistics.median(s.draft_time for s in stats_list),
            "overhead_share": statistics.median(share),
            "noise_share": statistics.median(s.noise_time / s.wall_time for s in stats_list),
            "sequential_target_calls": stats_list[0].sequential_target_calls,
            "block_efficiency": statistics.median(s.block_efficiency for s in stats_list),
            "rounds": stats_list[0].rounds,
        }
    spec, plain = report["speculative"], report["plain"]
    report["speculative"]["overhead_ms_per_round"] = (
        spec["wall_time_s"] - spec["target_time_s"] - spec["draft_time_s"]) / spec["rounds"] * 1e3
    report["wall_clock_speedup"] = plain["wall_time_s"] / spec["wall_time_s"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"overhead{args.tag}.json").write_text(json.dumps(report, indent=2))
    table = [
        "| sampler | sequential target calls | block efficiency | wall s | in target s | in draft s | overhead share | of which noise draws |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("plain", "speculative"):
        r = report[kind]
        table.append(f"| {kind} | {r['sequential_target_calls']} | {r['block_efficiency']:.2f} | "
                     f"{r['wall_time_s']:.2f} | {r['target_time_s']:.2f} | {r['draft_time_s']:.3f} | "
                     f"{100 * r['overhead_share']:.1f}% | {100 * r['noise_share']:.1f}% |")
    table.append("")
    table.append(f"Target call at B={args.chains} (hidden {args.hidden}): "
                 f"{report['setting']['target_call_ms_batch_of_chains']:.1f} ms; target calls "
                 f"{spec['target_time_s'] / spec['rounds'] * 1e3:.1f} ms per speculative round; "
                 f"engine overhead {spec['overhead_ms_per_round']:.2f} ms per round; "
                 f"wall-clock speed-up {report['wall_clock_speedup']:.2f}x (median of {args.repeats}).")
    (out / f"overhead{args.tag}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return report


def _time_call(kernel, x0, repeats=5):
    t = torch.zeros(x0.shape[0], dtype=torch.int64)
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        kernel.evaluate(x0, t)
        times.append(time.perf_counter() - tick)
    return 1e3 * min(times)


if __name__ == "__main__":
    main()
