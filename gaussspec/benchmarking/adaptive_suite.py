"""Suite ``adaptive``: the adaptive draft length against every fixed draft length and plain.

Cases span where speculation pays a lot, a little, and not at all (cheap targets, throughput-bound
targets, useless drafts). For each case the table gives the plain chain, every fixed draft length
and :class:`gaussspec.AdaptiveDraftLength`, measured interleaved in the same run, and checks the
issue's guarantees: adaptive within 5% of the best fixed draft length, and never more than 5%
slower than plain sampling.
"""

from __future__ import annotations

import attrs
import torch

import gaussspec as gs
from gaussspec.benchmarking import harness
from gaussspec.benchmarking.kernels import CallCost, LinearULA, ScoreNetworkULA
from gaussspec.benchmarking.report import Column, Section, SuiteResult, new_figure, save_figure
from gaussspec.benchmarking.report import run_columns
from gaussspec.benchmarking.synthetic import DRAFT_STEP_SECONDS as U

__all__ = ["run", "Case", "cases", "TOLERANCE"]

TOLERANCE = 0.05


@attrs.frozen
class Case:
    """A benchmark case: how to build its target, drafter and start states."""

    name: str
    description: str
    build: object  # (steps) -> (target, drafter, x0)


def _linear(dimension, error, target_cost, draft_cost):
    def build(steps):
        target = LinearULA(dimension, 0.1, steps, 0.0, target_cost)
        draft = LinearULA(dimension, 0.1, steps, error, draft_cost)
        return target, gs.KernelDrafter(draft), target.initial_state(8, torch.Generator().manual_seed(4))
    return build


def _network(dimension, hidden, step_size, eta, cost, drafter):
    def build(steps):
        target = ScoreNetworkULA(dimension, hidden, step_size, eta, steps, cost=cost)
        x0 = target.initial_state(8, torch.Generator().manual_seed(4))
        return target, drafter(), x0
    return build


def cases(quick: bool) -> list[Case]:
    """The cases (the real-compute network case is smaller in quick runs)."""
    c = lambda ratio: CallCost(latency=ratio * U)  # noqa: E731 - latency-bound, ratio x a draft step
    return [
        Case("good draft, c=30", "linear ULA d=64, 5% gradient error (acc. ~0.96), latency-bound "
             "target call = 30 draft steps", _linear(64, 0.05, c(30), c(1))),
        Case("mediocre draft, c=30", "linear ULA d=1024, 20% gradient error (acc. ~0.46), "
             "latency-bound, c = 30", _linear(1024, 0.2, c(30), c(1))),
        Case("free drafter, c=10", "score network d=32, eta=0.3, free drafter (acc. ~0.75), "
             "latency-bound 2 ms call", _network(32, 128, 0.05, 0.3, c(10), gs.FreeDrafter)),
        Case("frozen drafter, c=10", "score network d=32, eta=0.1, frozen drafter, latency-bound "
             "2 ms call", _network(32, 128, 0.05, 0.1, c(10), gs.FrozenDrafter)),
        Case("cheap target, c=1", "linear ULA d=64, 5% error, target call = 1 draft step "
             "(engine time dominates): plain should win", _linear(64, 0.05, c(1), c(1))),
        Case("throughput-bound, c=10", "linear ULA d=64, 5% error, call cost proportional to "
             "states (c = 10 per batch of 8): plain should win",
             _linear(64, 0.05, CallCost(per_state=10 * U / 8), CallCost(per_state=U / 8))),
        Case("useless draft, c=10", "linear ULA d=64, 300% gradient error (acc. ~0.01), "
             "latency-bound c = 10: plain should win", _linear(64, 3.0, c(10), c(1))),
        Case("real CPU network", "score network d=3072, hidden 2048, real compute on one CPU "
             "thread (throughput-bound), free drafter",
             _network(3072, 2048, 0.01, 1.0, CallCost(), gs.FreeDrafter)),
    ]


def _sizes(quick: bool, tiny: bool) -> dict:
    if tiny:
        return {"steps": 40, "lengths": (1, 4), "cases": 2, "network_steps": 20}
    if quick:
        return {"steps": 150, "lengths": (1, 2, 4, 8, 16), "cases": None, "network_steps": 60}
    return {"steps": 600, "lengths": (1, 2, 4, 8, 16), "cases": None, "network_steps": 200}


def _print(row):
    print(f"  {row['label']:34s} wall {row['wall_s']:7.3f} s  BE {row['block_efficiency']:5.2f}  "
          f"mean g {row['mean_draft_length']:5.2f}  x{row['speedup']:.2f}", flush=True)


def verdict(rows: list[dict]) -> dict:
    """Adaptive against the best fixed draft length and against plain (wall-clock medians)."""
    plain_row = rows[0]
    ada = next(r for r in rows if r["kind"] == harness.ADAPTIVE)
    best = harness.best_fixed(rows, ada)
    vs_best = ada["wall_s"] / best["wall_s"] - 1  # > 0: adaptive slower than the best fixed
    vs_plain = ada["wall_s"] / plain_row["wall_s"] - 1  # > 0: adaptive slower than plain
    best_overall = min(best["wall_s"], plain_row["wall_s"])
    slower_than_best = harness.slower_in(ada, best)  # paired repeats in which adaptive was slower
    slower_than_plain = harness.slower_in(ada, plain_row)
    return {
        "plain_wall_s": plain_row["wall_s"], "best_fixed": best["draft_length"],
        "best_fixed_wall_s": best["wall_s"], "best_fixed_speedup": best["speedup"],
        "adaptive_wall_s": ada["wall_s"], "adaptive_speedup": ada["speedup"],
        "adaptive_mean_draft_length": ada["mean_draft_length"],
        "adaptive_block_efficiency": ada["block_efficiency"],
        "adaptive_vs_best_fixed": vs_best, "adaptive_vs_plain": vs_plain,
        "adaptive_vs_best_overall": ada["wall_s"] / best_overall - 1,
        "within_5pct_of_best_fixed": vs_best <= TOLERANCE,
        "within_5pct_of_plain": vs_plain <= TOLERANCE,
        "slower_than_best_fixed_in": "{}/{}".format(*slower_than_best),
        "slower_than_plain_in": "{}/{}".format(*slower_than_plain),
    }


def run(result: SuiteResult, out_dir, quick: bool, repeats: int, tiny: bool = False) -> None:
    """Fill ``result`` with one table per case, the verdict table and a figure."""
    sizes = _sizes(quick, tiny)
    harness.warm_up()
    chosen = cases(quick)[: sizes["cases"]] if sizes["cases"] else cases(quick)
    verdicts, all_rows = [], []
    for case in chosen:
        print(f"case: {case.name}", flush=True)
        steps = sizes["network_steps"] if case.name == "real CPU network" else sizes["steps"]
        target, drafter, x0 = case.build(steps)
        contenders = [harness.plain()]
        contenders += [harness.speculative(target, drafter, g, label=f"fixed g={g}")
                       for g in sizes["lengths"]]
        contenders.append(harness.adaptive(target, drafter, 16))
        rows = harness.measure(target, x0, contenders, repeats, seed=40, on_row=_print)
        for row in rows:
            row["case"] = case.name
        all_rows += rows
        verdicts.append({"case": case.name, "description": case.description, "steps": steps,
                         **verdict(rows)})
    result.meta["sizes"] = sizes
    result.sections.append(Section(
        "Adaptive against best fixed and plain",
        f"8 chains, {sizes['steps']} steps (real CPU network: {sizes['network_steps']}), block "
        "verification; fixed draft lengths " + ", ".join(map(str, sizes["lengths"])) + "; "
        "AdaptiveDraftLength(max_draft_length=16) with its defaults. *vs best fixed* and *vs plain*: "
        "adaptive's median wall-clock relative to theirs (> 0 = adaptive slower); the issue asks for "
        "<= +5% on both. *slower than ... in*: the repeats (interleaved, so run r of each "
        "contender forms a pair) in which adaptive was the slower. Simulated costs: a draft step is "
        f"{U * 1e3:.1f} ms; c = target call / draft step.",
        (Column("case", "case"), Column("plain s", "plain_wall_s", "{:.3f}"),
         Column("best fixed g", "best_fixed"), Column("best fixed speed-up", "best_fixed_speedup", "{:.2f}x"),
         Column("adaptive speed-up", "adaptive_speedup", "{:.2f}x"),
         Column("adaptive mean g", "adaptive_mean_draft_length", "{:.2f}"),
         Column("vs best fixed", "adaptive_vs_best_fixed", "{:+.1%}"),
         Column("vs plain", "adaptive_vs_plain", "{:+.1%}"),
         Column("slower than best fixed in", "slower_than_best_fixed_in"),
         Column("slower than plain in", "slower_than_plain_in"),
         Column("<= 5% vs best fixed", "within_5pct_of_best_fixed"),
         Column("<= 5% vs plain", "within_5pct_of_plain")),
        verdicts))
    result.sections.append(Section(
        "All runs", "; ".join(f"*{v['case']}*: {v['description']}" for v in verdicts) + ".",
        (Column("case", "case"), Column("sampler", "label"),
         *run_columns()),
        all_rows))
    figure, (axis,) = new_figure(1, width=9.0, height=4.0)
    names = [v["case"] for v in verdicts]
    positions = range(len(names))
    width = 0.8 / (len(sizes["lengths"]) + 1)
    for k, g in enumerate(sizes["lengths"]):
        values = [next(r["speedup"] for r in all_rows if r["case"] == n and r["draft_length"] == g)
                  for n in names]
        axis.bar([p + k * width for p in positions], values, width, label=f"g={g}", alpha=0.6)
    axis.bar([p + len(sizes["lengths"]) * width for p in positions],
             [v["adaptive_speedup"] for v in verdicts], width, label="adaptive", color="black")
    axis.axhline(1.0, color="red", lw=1.0, label="plain")
    axis.set_xticks([p + 0.4 for p in positions], labels=names, rotation=25, ha="right", fontsize=8)
    axis.set(ylabel="wall-clock speed-up over plain", yscale="log",
             title="fixed draft lengths and the adaptive rule")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axis.yaxis.set_major_formatter(ScalarFormatter())
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_yticks([0.25, 0.5, 1, 2, 4, 8])
    axis.legend(fontsize=7, ncol=4)
    result.figures.append((save_figure(figure, out_dir, "bench_adaptive.png"),
                           "Speed-up over plain of each fixed draft length and of the adaptive "
                           "rule (black), per case."))
    ok_best = sum(v["within_5pct_of_best_fixed"] for v in verdicts)
    ok_plain = sum(v["within_5pct_of_plain"] for v in verdicts)
    result.summary.append(
        f"Adaptive within 5% of the best fixed draft length in {ok_best} of {len(verdicts)} cases; "
        f"not more than 5% slower than plain in {ok_plain} of {len(verdicts)} cases.")
    for v in verdicts:
        if not (v["within_5pct_of_best_fixed"] and v["within_5pct_of_plain"]):
            result.summary.append(
                f"Miss: {v['case']}: adaptive {v['adaptive_vs_best_fixed']:+.1%} vs best fixed "
                f"(g={v['best_fixed']}; slower in {v['slower_than_best_fixed_in']} paired repeats), "
                f"{v['adaptive_vs_plain']:+.1%} vs plain (slower in {v['slower_than_plain_in']}; "
                f"mean g {v['adaptive_mean_draft_length']:.2f}).")
