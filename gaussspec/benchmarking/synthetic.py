"""Suite ``synthetic``: the dimension sweep and the cost-ratio sweep on linear ULA kernels.

* Dimension sweep: a draft whose gradient has a fixed relative error ``e`` has a per-coordinate
  mean error, so the whitened gap grows like ``sqrt(d)`` and acceptance falls like
  ``2 Phi(-delta / 2)`` (measured against that closed form, averaged over the stationary law).
* Cost-ratio sweep: a target whose call costs ``c`` draft steps, in two cost models: latency-bound
  (a call costs the same whatever its batch, like an accelerator with room to spare) and
  throughput-bound (a call costs in proportion to the states it evaluates, like a saturated CPU).
"""

from __future__ import annotations

import torch

import gaussspec as gs
from gaussspec.benchmarking import harness
from gaussspec.benchmarking.kernels import CallCost, LinearULA, predicted_acceptance
from gaussspec.benchmarking.report import Column, Section, SuiteResult, new_figure, save_figure
from gaussspec.benchmarking.report import run_columns

__all__ = ["run", "DRAFT_STEP_SECONDS"]

DRAFT_STEP_SECONDS = 2e-4  # u: the simulated cost of one (batched) draft step
STEP_SIZE = 0.1


def _sizes(quick: bool, tiny: bool) -> dict:
    if tiny:
        return {"dims": (1, 256, 4096), "ratios": (1, 30), "steps": 40, "lengths": (4,), "chains": 4}
    if quick:
        return {"dims": (1, 16, 256, 4096), "ratios": (1, 10, 100), "steps": 100, "lengths": (4,),
                "chains": 8}
    return {"dims": (1, 4, 16, 64, 256, 1024, 4096), "ratios": (1, 3, 10, 30, 100),
            "steps": 200, "lengths": (2, 4, 8), "chains": 8, "cheap_steps": 1000}


def _ratio_steps(sizes: dict, ratio: float) -> int:
    """Steps per run of the cost-ratio sweep: longer where calls are cheap (c <= 10), so that every
    run lasts long enough (0.2 s and more) for the adaptive rule's few learning rounds to count
    as they would in a real run, not as a tenth of it."""
    return sizes.get("cheap_steps", sizes["steps"]) if ratio <= 10 else sizes["steps"]


def _print(row):
    print(f"  {row['label']:34s} wall {row['wall_s']:7.3f} s  BE {row['block_efficiency']:5.2f}  "
          f"x{row['speedup']:.2f}", flush=True)


def dimension_sweep(sizes: dict, repeats: int, perturbation: float = 0.2, ratio: float = 10.0):
    """Rows per dimension: predicted and measured acceptance, block efficiency, speed-up."""
    rows = []
    u = DRAFT_STEP_SECONDS
    for d in sizes["dims"]:
        print(f"dimension {d}", flush=True)
        target = LinearULA(d, STEP_SIZE, sizes["steps"], 0.0, CallCost(latency=ratio * u))
        draft = LinearULA(d, STEP_SIZE, sizes["steps"], perturbation, CallCost(latency=u))
        x0 = target.initial_state(sizes["chains"], gs_generator(1))
        contenders = [harness.plain(),
                      harness.speculative(target, gs.KernelDrafter(draft), 4, "block",
                                          drafter_name="kernel"),
                      harness.speculative(target, gs.KernelDrafter(draft), 4, "token",
                                          drafter_name="kernel")]
        measured = harness.measure(target, x0, contenders, repeats, seed=10, on_row=_print)
        delta, accept = predicted_acceptance(d, STEP_SIZE, perturbation)
        plain_row, block, token = measured
        rows.append({
            "dimension": d, "delta": delta, "predicted_acceptance": accept,
            "acceptance_1_token": token["acceptance_by_position"][0],
            "acceptance_1_block": block["acceptance_by_position"][0],
            "block_efficiency_token": token["block_efficiency"],
            "block_efficiency_block": block["block_efficiency"],
            "plain_wall_s": plain_row["wall_s"], "token_wall_s": token["wall_s"],
            "block_wall_s": block["wall_s"],
            "speedup_token": token["speedup"], "speedup_block": block["speedup"],
            "runs": measured,
        })
    return rows


def cost_ratio_sweep(sizes: dict, repeats: int, dimension: int = 64, perturbation: float = 0.1):
    """Rows per (cost model, ratio c, contender): speed-up over the plain chain."""
    rows = []
    u = DRAFT_STEP_SECONDS
    chains = sizes["chains"]
    for model in ("latency", "throughput"):
        for ratio in sizes["ratios"]:
            print(f"cost model {model}, c = {ratio}", flush=True)
            if model == "latency":
                target_cost, draft_cost = CallCost(latency=ratio * u), CallCost(latency=u)
            else:  # a call on the B states of one plain step costs c u; a draft step on B costs u
                target_cost = CallCost(per_state=ratio * u / chains)
                draft_cost = CallCost(per_state=u / chains)
            steps = _ratio_steps(sizes, ratio)
            target = LinearULA(dimension, STEP_SIZE, steps, 0.0, target_cost)
            draft = gs.KernelDrafter(LinearULA(dimension, STEP_SIZE, steps, perturbation, draft_cost))
            x0 = target.initial_state(chains, gs_generator(2))
            contenders = [harness.plain()]
            contenders += [harness.speculative(target, draft, g, drafter_name="kernel")
                           for g in sizes["lengths"]]
            contenders.append(harness.adaptive(target, draft, 16, drafter_name="kernel"))
            for row in harness.measure(target, x0, contenders, repeats, seed=20, on_row=_print):
                row.update({"cost_model": model, "cost_ratio": ratio, "dimension": dimension,
                            "steps": steps})
                rows.append(row)
    return rows


def gs_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def _figures(result: SuiteResult, dims_rows, cost_rows, out_dir) -> None:
    figure, (left, right) = new_figure(2)
    dims = [r["dimension"] for r in dims_rows]
    left.plot(dims, [r["predicted_acceptance"] for r in dims_rows], "k--",
              label="closed form E[2 Phi(-delta/2)]")
    left.plot(dims, [r["acceptance_1_token"] for r in dims_rows], "o-", label="measured, token")
    left.plot(dims, [r["acceptance_1_block"] for r in dims_rows], "s-", label="measured, block")
    left.set(xscale="log", xlabel="dimension d", ylabel="acceptance at position 1",
             title="acceptance vs dimension (fixed per-coordinate error)")
    left.legend(fontsize=8)
    right.plot(dims, [r["block_efficiency_block"] for r in dims_rows], "s-", label="block eff. (block)")
    right.plot(dims, [r["block_efficiency_token"] for r in dims_rows], "o-", label="block eff. (token)")
    right.plot(dims, [r["speedup_block"] for r in dims_rows], "s:", label="wall speed-up (block)")
    right.axhline(1.0, color="grey", lw=0.8)
    right.set(xscale="log", xlabel="dimension d", title="gamma = 4, target call = 10 draft steps")
    right.legend(fontsize=8)
    result.figures.append((save_figure(figure, out_dir, "bench_synthetic_dimension.png"),
                           "Dimension sweep: acceptance falls as the whitened gap grows like "
                           "sqrt(d); block efficiency and wall-clock speed-up follow."))
    figure, axes = new_figure(2)
    for axis, model in zip(axes, ("latency", "throughput")):
        rows = [r for r in cost_rows if r["cost_model"] == model and r["kind"] != "plain"]
        for label in dict.fromkeys(r["label"] for r in rows):
            mine = [r for r in rows if r["label"] == label]
            axis.plot([r["cost_ratio"] for r in mine], [r["speedup"] for r in mine], "o-",
                      label=label.replace("kernel block/gamma ", ""))
        axis.axhline(1.0, color="grey", lw=0.8)
        axis.set(xscale="log", xlabel="cost ratio c = target call / draft step",
                 ylabel="wall-clock speed-up over plain", title=f"{model}-bound target calls")
        axis.legend(fontsize=8)
    result.figures.append((save_figure(figure, out_dir, "bench_synthetic_cost_ratio.png"),
                           "Cost-ratio sweep: where speculation pays (above the grey line)."))


def run(result: SuiteResult, out_dir, quick: bool, repeats: int, tiny: bool = False) -> None:
    """Fill ``result`` with the two sweeps (tables, figures and findings)."""
    sizes = _sizes(quick, tiny)
    harness.warm_up()
    dims_rows = dimension_sweep(sizes, repeats)
    cost_rows = cost_ratio_sweep(sizes, repeats)
    u_ms = DRAFT_STEP_SECONDS * 1e3
    result.meta["sizes"] = sizes
    result.sections.append(Section(
        "Dimension sweep",
        f"Linear ULA on N(mu, I), h = {STEP_SIZE}, {sizes['chains']} chains x {sizes['steps']} "
        "steps started at stationarity; draft = the same chain with a 20% gradient error "
        "(KernelDrafter), so delta = 0.2 sqrt(h/2) |x - mu| grows like sqrt(d). gamma = 4. "
        f"Simulated costs: target call {10 * u_ms:.1f} ms, draft step {u_ms:.1f} ms (latency-bound). "
        "*predicted* = E[2 Phi(-delta/2)] over the stationary law (token-wise acceptance at "
        "position 1).",
        (Column("d", "dimension"), Column("median delta", "delta", "{:.2f}"),
         Column("predicted acc.", "predicted_acceptance", "{:.3f}"),
         Column("acc. token", "acceptance_1_token", "{:.3f}"),
         Column("acc. block", "acceptance_1_block", "{:.3f}"),
         Column("block eff. token", "block_efficiency_token", "{:.2f}"),
         Column("block eff. block", "block_efficiency_block", "{:.2f}"),
         Column("plain s", "plain_wall_s", "{:.3f}"),
         Column("block s", "block_wall_s", "{:.3f}"),
         Column("speed-up block", "speedup_block", "{:.2f}x"),
         Column("speed-up token", "speedup_token", "{:.2f}x")),
        dims_rows))
    result.sections.append(Section(
        "Cost-ratio sweep",
        f"Linear ULA, d = 64, 10% gradient error in the draft (acceptance about 0.93), "
        f"{sizes['chains']} chains x {_ratio_steps(sizes, 1)} steps (c <= 10) or "
        f"{_ratio_steps(sizes, 100)} steps (c > 10), block verification. A draft step "
        f"costs u = {u_ms:.1f} ms and a target call c u: *latency*: whatever the number of "
        "states; *throughput*: c u per batch of B states (a round on B (gamma + 1) states costs "
        "(gamma + 1) c u). Engine time comes on top of the simulated costs.",
        (Column("cost model", "cost_model"), Column("c", "cost_ratio"), Column("sampler", "label"),
         *run_columns()),
        cost_rows))
    _figures(result, dims_rows, cost_rows, out_dir)
    first, last = dims_rows[0], dims_rows[-1]
    result.summary.append(
        f"Acceptance at position 1 falls from {first['acceptance_1_token']:.2f} (d = "
        f"{first['dimension']}) to {last['acceptance_1_token']:.2f} (d = {last['dimension']}) "
        f"(closed form {first['predicted_acceptance']:.2f} -> {last['predicted_acceptance']:.2f}); "
        f"block efficiency {first['block_efficiency_block']:.2f} -> "
        f"{last['block_efficiency_block']:.2f}.")
    for model in ("latency", "throughput"):
        spec = [r for r in cost_rows if r["cost_model"] == model and r["kind"] == "speculative"]
        paying = sorted({r["cost_ratio"] for r in spec if r["speedup"] > 1.0})
        best = max(spec, key=lambda r: r["speedup"])
        result.summary.append(
            f"{model}-bound: fixed-gamma speculation beats plain at c in {paying or 'none'}; "
            f"best {best['speedup']:.2f}x ({best['label']}, c = {best['cost_ratio']}).")
