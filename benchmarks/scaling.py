"""Throughput of many independent chains against the number of processes (torch.distributed).

Runs itself under torchrun (gloo, one thread per process) for each process count and records
chains per second (plain and speculative) into benchmarks/results/scaling.{json,md}.

Run: python benchmarks/scaling.py [--processes 1 2] [--chains 32] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import gaussspec as gs
from gaussspec.distributed import init_from_environment, sample_distributed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import ScoreNetworkULA  # noqa: E402  (the same score network, at d = 64)


def worker(args):
    torch.set_num_threads(1)
    rank, world = init_from_environment("gloo")
    kernel = ScoreNetworkULA(dimension=64, num_steps=args.steps)  # 64 -> 2048 -> 64
    x0 = torch.zeros(args.chains, 64)
    out = {}
    for kind in ("plain", "speculative"):
        sampler = None if kind == "plain" else gs.SpeculativeSampler(kernel, gs.FreeDrafter(), 6)
        sample_distributed(sampler, kernel, x0[: max(world, 2)], seed=1)  # warm-up (numba, caches)
        if world > 1:
            torch.distributed.barrier()
        tick = time.perf_counter()
        result = sample_distributed(sampler, kernel, x0, seed=1)
        out[kind] = {"wall_s": time.perf_counter() - tick,
                     "block_efficiency": result.stats.block_efficiency,
                     "rounds": result.stats.rounds}
    out["split_call_ms"] = split_call(world, rank)
    if rank == 0:
        Path(args.out).write_text(json.dumps(out))
    if world > 1:
        torch.distributed.destroy_process_group()


def split_call(world, rank, states=8, repeats=20):
    """Time one batched verification call of ``states`` states of a d = 3072 score network
    (5 ms-class at batch 8), evaluated whole on one rank or split across the ranks and
    all-gathered: does splitting one long chain's target call pay?"""
    sys.path.insert(0, str(Path(__file__).parent))
    from overhead import ScoreNetworkULA

    kernel = ScoreNetworkULA()
    x = torch.randn(states, 3072, generator=torch.Generator().manual_seed(0))
    mine = x.chunk(world)[rank]
    times = []
    for _ in range(repeats + 2):
        if world > 1:
            torch.distributed.barrier()
        tick = time.perf_counter()
        part = kernel.evaluate(mine, None)
        if world > 1:
            pieces = [torch.empty_like(part) for _ in range(world)]
            torch.distributed.all_gather(pieces, part)
        times.append(time.perf_counter() - tick)
    return 1e3 * sorted(times[2:])[len(times[2:]) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/scaling")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    results = Path(args.out).parent
    results.mkdir(parents=True, exist_ok=True)
    rows, rows_split = [], []
    for count in args.processes:
        part = results / f"scaling_{count}.json"
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={count}",
                   "--standalone", __file__, "--worker", "--chains", str(args.chains),
                   "--steps", str(args.steps), "--out", str(part)]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        data = json.loads(part.read_text())
        split_ms = data.pop("split_call_ms")
        rows_split.append({"processes": count, "verification_call_ms": split_ms})
        for kind, d in data.items():
            rows.append({"processes": count, "sampler": kind, **d,
                         "chains_per_s": args.chains / d["wall_s"],
                         "chain_steps_per_s": args.chains * args.steps / d["wall_s"]})
    Path(args.out + ".json").write_text(json.dumps(
        {"chains": args.chains, "steps": args.steps, "cpu_cores": os.cpu_count(), "rows": rows,
         "split_verification_call": rows_split},
        indent=2))
    lines = ["| processes | sampler | wall s | chains/s | chain-steps/s | block efficiency |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['sampler']} | {r['wall_s']:.2f} | "
                     f"{r['chains_per_s']:.2f} | {r['chain_steps_per_s']:.0f} | "
                     f"{r['block_efficiency']:.2f} |")
    lines += ["", "| processes | one 8-state verification call, split + all_gather (ms) |", "|---|---|"]
    lines += [f"| {r['processes']} | {r['verification_call_ms']:.2f} |" for r in rows_split]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
