"""Benchmark: speculative vs plain DDPM/DDIM on the embedded 8x8 digits model (CPU by default).

Measured per configuration: sequential target calls (plain: K; speculative: verification rounds,
plus one per round for the frozen drafter), their reduction K / calls, block efficiency
E[tau + 1], states evaluated by the target, and wall-clock against the plain chain of the same
scheduler, K and batch (measured in the same process right before its speculative group).

The grid is a subset of {K} x {gamma} x {verification, coupling} x {drafter} x {eta} x {batch}:

* A: DDPM, K in {100, 250, 1000}, gamma in {2, 4, 8, 16}; block verification, gamma coupling,
  free drafter freezing the clean-image prediction (the adapter's default); batch 16.
* B: K = 1000, batch 16, free drafter, gamma in {4, 8}: token verification with the reflection
  coupling and with the gamma coupling (block + gamma is in A).
* C: K = 1000, batch 16, gamma = 8, block: free vs frozen drafter, each freezing epsilon or the
  clean-image prediction, and the independent draft UNet (KernelDrafter).
* D: DDIM, K = 250, batch 16, gamma = 8, free drafter, block: eta in {0.1, 0.5, 1.0}, freezing
  the clean-image prediction or epsilon.
* E: batch 1, K = 1000, free drafter, block, gamma in {8, 16}.

    OMP_NUM_THREADS=1 python benchmarks/ddpm_bench.py [--quick] [--no-doc] [--device cpu|cuda]

Writes benchmarks/results/ddpm_bench.json and .md and the DDPM section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import gaussspec as gs
from gaussspec.benchmarking.report import replace_doc_section  # noqa: E402
from gaussspec.adapters.ddpm import DiffusionKernel
from gaussspec.adapters.ddpm.models import load_digits_pipeline, load_draft_unet
from gaussspec.adapters.ddpm.pipeline import draft_kernel_like

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## DDPM (diffusers, embedded 8x8 digits model)"


def _kernel(pipeline, scheduler_kind, steps, eta, quantity):
    from diffusers import DDIMScheduler

    if scheduler_kind == "ddim":
        scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        return DiffusionKernel(pipeline.unet, scheduler, steps, eta=eta, frozen_quantity=quantity)
    return DiffusionKernel(pipeline.unet, pipeline.scheduler, steps, frozen_quantity=quantity)


def _drafter(kind, kernel, draft_unet):
    if kind == "free":
        return gs.FreeDrafter()
    if kind == "frozen":
        return gs.FrozenDrafter()
    return gs.KernelDrafter(draft_kernel_like(kernel, draft_unet))


def run_plain(kernel, batch, seed, device):
    generator = torch.Generator(device=device).manual_seed(seed)
    result = gs.sample_chain(kernel, kernel.initial_state(batch, generator), generator=generator)
    _sync(device)
    return result.stats


def run_spec(kernel, drafter, gamma, verification, coupling, batch, seed, device):
    sampler = gs.SpeculativeSampler(kernel, drafter, draft_length=gamma, verification=verification,
                                    coupling=coupling)
    generator = torch.Generator(device=device).manual_seed(seed)
    result = sampler.sample(kernel.initial_state(batch, generator), generator=generator)
    _sync(device)
    return result.stats


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def build_grid(quick: bool) -> list[dict]:
    """The configurations, grouped so each group shares one plain baseline."""
    grid = []
    ks = (100, 250) if quick else (100, 250, 1000)
    gammas = (4, 8) if quick else (2, 4, 8, 16)
    big_k = 250 if quick else 1000
    base = dict(scheduler="ddpm", eta=None, batch=16, drafter="free", quantity="sample",
                verification="block", coupling="gamma")
    for k in ks:
        for g in gammas:
            grid.append({**base, "group": "A", "steps": k, "gamma": g})
    for g in ((8,) if quick else (4, 8)):
        for coupling in ("reflection", "gamma"):
            grid.append({**base, "group": "B", "steps": big_k, "gamma": g, "verification": "token",
                         "coupling": coupling})
    for drafter, quantity in (("free", "epsilon"), ("frozen", "sample"), ("frozen", "epsilon"),
                              ("independent", "sample")):
        grid.append({**base, "group": "C", "steps": big_k, "gamma": 8, "drafter": drafter, "quantity": quantity})
    for eta in (0.1, 0.5, 1.0):
        for quantity in ("sample", "epsilon"):
            grid.append({**base, "group": "D", "scheduler": "ddim", "eta": eta, "steps": 100 if quick else 250,
                         "gamma": 8, "quantity": quantity})
    for g in ((8,) if quick else (8, 16)):
        grid.append({**base, "group": "E", "batch": 1, "steps": big_k, "gamma": g})
    return grid


def _plain_key(cfg):
    return (cfg["scheduler"], cfg["steps"], cfg["batch"], cfg["eta"] if cfg["scheduler"] == "ddim" else None)


def run_grid(grid, device, seed):
    pipeline = load_digits_pipeline()
    pipeline.unet.to(device)
    draft_unet = load_draft_unet().to(device)
    plain_cache: dict = {}
    rows = []
    # warm-up: numba compilation of the residual sampler and torch's first calls
    warm = _kernel(pipeline, "ddpm", 20, None, "sample")
    run_spec(warm, gs.FreeDrafter(), 4, "block", "gamma", 2, 0, device)
    run_plain(warm, 2, 0, device)
    for cfg in grid:
        key = _plain_key(cfg)
        if key not in plain_cache:  # the plain baseline, measured right before its group
            kernel = _kernel(pipeline, cfg["scheduler"], cfg["steps"], cfg["eta"], "epsilon")
            stats = run_plain(kernel, cfg["batch"], seed, device)
            plain_cache[key] = {"wall_time": stats.wall_time, "sequential_target_calls": stats.sequential_target_calls,
                                "target_evaluations": stats.target_evaluations}
            print(f"plain {key}: {stats.wall_time:.1f} s", flush=True)
        plain = plain_cache[key]
        kernel = _kernel(pipeline, cfg["scheduler"], cfg["steps"], cfg["eta"], cfg["quantity"])
        stats = run_spec(kernel, _drafter(cfg["drafter"], kernel, draft_unet), cfg["gamma"], cfg["verification"],
                         cfg["coupling"], cfg["batch"], seed + 1, device)
        row = {
            **cfg,
            "sequential_target_calls": stats.sequential_target_calls,
            "rounds": stats.rounds,
            "call_reduction": plain["sequential_target_calls"] / stats.sequential_target_calls,
            "block_efficiency": stats.block_efficiency,
            "acceptance_by_position": stats.acceptance_by_position,
            "target_evaluations": stats.target_evaluations,
            "evaluations_vs_plain": stats.target_evaluations / plain["target_evaluations"],
            "draft_evaluations": stats.draft_evaluations,
            "wall_time": stats.wall_time,
            "target_time": stats.target_time,
            "draft_time": stats.draft_time,
            "plain_wall_time": plain["wall_time"],
            "wall_ratio": plain["wall_time"] / stats.wall_time,
        }
        rows.append(row)
        print(f"{cfg['group']} {cfg['scheduler']} K={cfg['steps']} b={cfg['batch']} {cfg['drafter']}/{cfg['quantity']} "
              f"{cfg['verification']}/{cfg['coupling']} g={cfg['gamma']} eta={cfg['eta']}: calls {row['sequential_target_calls']} "
              f"({row['call_reduction']:.2f}x), BE {row['block_efficiency']:.2f}, wall {row['wall_time']:.1f} s "
              f"({row['wall_ratio']:.2f}x)", flush=True)
    return rows


def _label(r):
    drafter = "independent UNet" if r["drafter"] == "independent" else f"{r['drafter']} ({r['quantity']})"
    sched = "DDPM" if r["scheduler"] == "ddpm" else f"DDIM eta={r['eta']}"
    return sched, drafter


def markdown(rows, meta) -> str:
    lines = [
        SECTION,
        "",
        f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['threads']} thread(s); device {meta['device']}; "
        f"{meta['date']}. Produced by `benchmarks/ddpm_bench.py`{' --quick' if meta['quick'] else ''} "
        "(raw numbers in `benchmarks/results/ddpm_bench.json`).",
        "",
        "Model: the embedded 8x8x1 digits `UNet2DModel` (1.1M parameters, epsilon prediction, "
        "`DDPMScheduler` fixed_small with clip_sample; DDIM rows use `DDIMScheduler` from the same "
        "config). Each speculative run is compared with the plain chain of the same scheduler, K and "
        "batch, run in the same process just before. *seq. calls* = sequential target calls (plain: K); "
        "*evals* = states evaluated by the target, relative to plain; *wall* = speculative wall-clock and "
        "plain/speculative ratio (> 1 means speculation is faster). CPU wall-clock is honest but noisy: "
        "the 2 cores are shared with other jobs, and on CPU a batched call over gamma+1 states costs "
        "nearly gamma+1 single calls once the batch is large.",
        "",
        "| grp | scheduler | K | batch | drafter | verification / coupling | gamma | seq. calls | reduction "
        "| block eff. | evals | wall [s] | wall ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sched, drafter = _label(r)
        lines.append(
            f"| {r['group']} | {sched} | {r['steps']} | {r['batch']} | {drafter} | {r['verification']} / {r['coupling']} "
            f"| {r['gamma']} | {r['sequential_target_calls']} | {r['call_reduction']:.2f}x | {r['block_efficiency']:.2f} "
            f"| {r['evaluations_vs_plain']:.2f}x | {r['wall_time']:.1f} (plain {r['plain_wall_time']:.1f}) "
            f"| {r['wall_ratio']:.2f}x |"
        )
    at_1000 = [r for r in rows if r["steps"] == 1000]
    if at_1000:
        best = max(at_1000, key=lambda r: r["call_reduction"])
        sched, drafter = _label(best)
        lines += [
            "",
            f"Best reduction of sequential target calls at K = 1000: **{best['call_reduction']:.1f}x** "
            f"({drafter}, {best['verification']} verification, gamma = {best['gamma']}, batch {best['batch']}; "
            "target: at least 4x).",
        ]
    lines += [
        "",
        "Groups: A = K and draft-length sweep; B = token verification (reflection vs gamma coupling); "
        "C = drafters and frozen quantity; D = DDIM noise level eta; E = batch 1.",
        "",
    ]
    return "\n".join(lines)


def write_doc_section(section: str) -> None:
    """Replace (or add) the DDPM section of docs/benchmarks.md, leaving other sections alone."""
    replace_doc_section(DOC, SECTION, section)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K <= 250 and fewer configurations (about 2 minutes)")
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = run_grid(build_grid(args.quick), args.device, args.seed)
    meta = {
        "machine": (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                    else f"{platform.machine()} CPU, {os.cpu_count()} cores shared"),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "quick": args.quick,
        "seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "ddpm_bench" + ("_quick" if args.quick else "") + ("" if args.device == "cpu" else "_" + args.device)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    section = markdown(rows, meta)
    (RESULTS / f"{name}.md").write_text(section)
    if not args.no_doc and not args.quick:
        write_doc_section(section)
    print(section)
    print(f"benchmark took {meta['seconds']:.0f} s")


if __name__ == "__main__":
    main()
