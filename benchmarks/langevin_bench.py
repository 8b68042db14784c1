"""Benchmark: speculative vs plain ULA on the eight posteriordb posteriors (CPU).

For each posterior, drafter and draft length gamma in {2, 4, 8, 16, 32}: one long chain, plain ULA
and speculative ULA at the same step size, run back to back in the same process (interleaved per
configuration, so both see the same machine load). Reported per configuration:

* sequential gradient calls (plain: K; speculative: rounds, plus one per round for "frozen"),
* block efficiency E[tau + 1],
* wall-clock ratio plain / speculative,
* effective samples per second (min over unconstrained coordinates; both chains have the same
  law, so their ESS estimate the same number and the ratio of ESS/s is about the wall ratio).

Then many chains (64) at gamma = 8 for each posterior with its best one-chain drafter: the batch
already fills the hardware, so speculation pays less (or not at all).

    OMP_NUM_THREADS=1 python benchmarks/langevin_bench.py [--steps 1000] [--quick]

Writes benchmarks/results/langevin_bench.json and .md and the Langevin section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import gaussspec as gs
from gaussspec.adapters import langevin

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Langevin (ULA on posteriordb posteriors)"

STEP_SIZES = {"gp_pois_regr-gp_pois_regr": 0.01}  # the Poisson GP is stiff; others use 0.05
DEFAULT_STEP = 0.05
DRAFT_LENGTHS = (2, 4, 8, 16, 32)


def effective_sample_size(chain: np.ndarray) -> float:
    """Min over coordinates of Geyer's initial-monotone-sequence ESS of one chain ``(n, d)``."""
    n = chain.shape[0]
    centred = chain - chain.mean(0)
    spectrum = np.fft.rfft(centred, n=2 * n, axis=0)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), axis=0)[:n] / n
    rho = acov / acov[0]
    ess = []
    for j in range(chain.shape[1]):
        pairs = rho[:-1:2, j] + rho[1::2, j]
        positive = np.argmax(pairs <= 0) if (pairs <= 0).any() else len(pairs)
        pairs = np.minimum.accumulate(pairs[:positive])
        tau = -1.0 + 2.0 * pairs.sum()
        ess.append(n / max(tau, 1.0 / np.log10(n)))
    return float(min(ess))


def drafters_for(post) -> list[str]:
    names = ["free", "frozen", "laplace", "float32"]
    if post.data_size is not None:
        names.append("subsample")
    return names


def make_drafter(kind: str, target, post, laplace_fit):
    if kind == "free":
        return gs.FreeDrafter()
    if kind == "frozen":
        return gs.FrozenDrafter()
    if kind == "laplace":
        return gs.KernelDrafter(langevin.LaplaceDraftKernel(target, laplace_fit))
    if kind == "float32":
        return gs.KernelDrafter(langevin.low_precision_draft(target))
    if kind == "subsample":
        size = max(1, post.data_size // 2)
        return gs.KernelDrafter(langevin.subsample_draft(target, size, torch.Generator().manual_seed(0)))
    raise ValueError(kind)


def _time_plain(target, x0, seed):
    start = time.perf_counter()
    result = gs.sample_chain(target, x0, generator=torch.Generator().manual_seed(seed), return_trajectory=True)
    return time.perf_counter() - start, result


def _time_spec(sampler, x0, seed):
    start = time.perf_counter()
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(seed), return_trajectory=True)
    return time.perf_counter() - start, result


def one_chain(name: str, steps: int, lengths, drafters=None) -> list[dict]:
    post = langevin.posterior(name)
    h = STEP_SIZES.get(name, DEFAULT_STEP)
    target = langevin.ULAKernel(post, h, steps, preconditioner=post.reference_covariance())
    laplace_fit = langevin.find_mode(post.log_density, post.initial_point())
    x0 = post.initial_state(1, torch.Generator().manual_seed(0))
    rows = []
    for kind in drafters or drafters_for(post):
        for gamma in lengths:
            sampler = gs.SpeculativeSampler(target, make_drafter(kind, target, post, laplace_fit), draft_length=gamma)
            plain_time, plain = _time_plain(target, x0, 1)  # interleaved: plain then speculative
            spec_time, spec = _time_spec(sampler, x0, 2)
            ess_plain = effective_sample_size(plain.trajectory[1:, 0].numpy())
            ess_spec = effective_sample_size(spec.trajectory[1:, 0].numpy())
            stats = spec.stats
            rows.append({
                "posterior": name, "dimension": post.dimension, "step_size": h, "drafter": kind,
                "draft_length": gamma, "steps": steps, "chains": 1,
                "plain_sequential_calls": plain.stats.sequential_target_calls,
                "spec_sequential_calls": stats.sequential_target_calls,
                "block_efficiency": stats.block_efficiency,
                "plain_seconds": plain_time, "spec_seconds": spec_time,
                "wall_ratio": plain_time / spec_time,
                "ess_plain": ess_plain, "ess_spec": ess_spec,
                "ess_per_s_plain": ess_plain / plain_time, "ess_per_s_spec": ess_spec / spec_time,
                "target_time": stats.target_time, "draft_time": stats.draft_time,
                "overhead_time": stats.overhead_time,
            })
            r = rows[-1]
            print(f"{name[:24]:24s} {kind:9s} g={gamma:2d} BE={r['block_efficiency']:5.2f} "
                  f"calls {r['spec_sequential_calls']:5d}/{r['plain_sequential_calls']} "
                  f"ratio {r['wall_ratio']:5.2f}", flush=True)
    return rows


def many_chains(name: str, kind: str, steps: int, chains: int = 64, gamma: int = 8) -> dict:
    post = langevin.posterior(name)
    h = STEP_SIZES.get(name, DEFAULT_STEP)
    target = langevin.ULAKernel(post, h, steps, preconditioner=post.reference_covariance())
    laplace_fit = langevin.find_mode(post.log_density, post.initial_point())
    x0 = post.initial_state(chains, torch.Generator().manual_seed(0))
    sampler = gs.SpeculativeSampler(target, make_drafter(kind, target, post, laplace_fit), draft_length=gamma)
    plain_time, plain = _time_plain(target, x0, 1)
    spec_time, spec = _time_spec(sampler, x0, 2)
    return {
        "posterior": name, "drafter": kind, "draft_length": gamma, "chains": chains, "steps": steps,
        "block_efficiency": spec.stats.block_efficiency,
        "plain_sequential_calls": plain.stats.sequential_target_calls,
        "spec_sequential_calls": spec.stats.sequential_target_calls,
        "plain_seconds": plain_time, "spec_seconds": spec_time, "wall_ratio": plain_time / spec_time,
    }


def _short(name: str) -> str:
    return name.split("-")[0]


def markdown(rows: list[dict], many: list[dict], meta: dict) -> str:
    lines = [
        SECTION,
        "",
        f"Measured by `benchmarks/langevin_bench.py` on {meta['machine']} ({meta['date']}), torch "
        f"{meta['torch']}, 1 thread, machine shared with other jobs (timings are noisy, +-20%). "
        f"One chain of {meta['steps']} steps, plain and speculative ULA interleaved in the same "
        "run, same step size h (0.05; 0.01 for gp_pois_regr) and preconditioner (the reference "
        "covariance), block verification. Calls = sequential gradient calls (plain: K). "
        "Ratio = plain wall-clock / speculative wall-clock. ESS/s is the minimum over coordinates "
        "of Geyer's ESS per second (single-chain ESS estimates are noisy; both chains have the "
        "same law).",
        "",
        "### Best configuration per posterior (one chain)",
        "",
        "| posterior | d | drafter | gamma | block eff. | calls spec / plain | wall ratio | ESS/s plain | ESS/s spec |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best = {}
    for r in rows:
        if r["posterior"] not in best or r["wall_ratio"] > best[r["posterior"]]["wall_ratio"]:
            best[r["posterior"]] = r
    for r in best.values():
        lines.append(
            f"| {_short(r['posterior'])} | {r['dimension']} | {r['drafter']} | {r['draft_length']} | "
            f"{r['block_efficiency']:.2f} | {r['spec_sequential_calls']} / {r['plain_sequential_calls']} | "
            f"{r['wall_ratio']:.2f}x | {r['ess_per_s_plain']:.0f} | {r['ess_per_s_spec']:.0f} |"
        )
    at_least_3 = sum(r["wall_ratio"] >= 3.0 for r in best.values())
    lines += [
        "",
        f"Posteriors with >= 3x wall-clock: **{at_least_3} of {len(best)}** (target: half).",
        "",
        "### All drafters, wall ratio (block efficiency) by draft length",
        "",
        "| posterior | drafter | " + " | ".join(f"gamma={g}" for g in meta["lengths"]) + " |",
        "|---|---|" + "---|" * len(meta["lengths"]),
    ]
    table: dict = {}
    for r in rows:
        table.setdefault((r["posterior"], r["drafter"]), {})[r["draft_length"]] = r
    for (post, kind), by_len in table.items():
        cells = [
            f"{by_len[g]['wall_ratio']:.2f}x ({by_len[g]['block_efficiency']:.1f})" if g in by_len else "-"
            for g in meta["lengths"]
        ]
        lines.append(f"| {_short(post)} | {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### 64 chains (gamma = 8, each posterior's best one-chain drafter)",
        "",
        "| posterior | drafter | block eff. | calls spec / plain | wall ratio |",
        "|---|---|---|---|---|",
    ]
    for r in many:
        lines.append(
            f"| {_short(r['posterior'])} | {r['drafter']} | {r['block_efficiency']:.2f} | "
            f"{r['spec_sequential_calls']} / {r['plain_sequential_calls']} | {r['wall_ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def write_doc_section(section: str) -> None:
    """Replace (or add) the Langevin section of docs/benchmarks.md, leaving other sections alone."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nOne section per adapter.\n\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("" if end < 0 else text[end + 1 :])
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the one-chain runs")
    parser.add_argument("--many-steps", type=int, default=200, help="steps of the 64-chain runs")
    parser.add_argument("--quick", action="store_true", help="two posteriors, gamma 4 and 16 only")
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = langevin.posterior_names()[:2] if args.quick else langevin.posterior_names()
    lengths = (4, 16) if args.quick else DRAFT_LENGTHS

    # warm-up: numba compilation of the residual sampler and torch's first calls
    one_chain(names[0], 50, (4,), drafters=["free"])

    rows = []
    for name in names:
        rows += one_chain(name, args.steps, lengths)
    best = {}
    for r in rows:
        if r["posterior"] not in best or r["wall_ratio"] > best[r["posterior"]]["wall_ratio"]:
            best[r["posterior"]] = r
    many = [many_chains(name, best[name]["drafter"], args.many_steps) for name in names]
    for r in many:
        print(f"64 chains {r['posterior'][:24]:24s} {r['drafter']:9s} ratio {r['wall_ratio']:.2f}", flush=True)
    meta = {
        "machine": f"{platform.machine()} CPU ({platform.processor() or 'unknown'}), 2 cores shared",
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "steps": args.steps,
        "many_steps": args.many_steps,
        "lengths": list(lengths),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "langevin_bench.json").write_text(json.dumps({"meta": meta, "one_chain": rows, "many_chains": many}, indent=2))
    section = markdown(rows, many, meta)
    (RESULTS / "langevin_bench.md").write_text(section)
    if not args.no_doc and not args.quick:
        write_doc_section(section)
    print(section)


if __name__ == "__main__":
    main()
