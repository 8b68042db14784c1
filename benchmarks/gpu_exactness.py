"""Exactness of speculative DDPM on a GPU: two-sample tests of speculative against plain chains.

The engine's GPU path (any device but the CPU) has its own verification and drafting code (the
CPU runs compiled kernels instead), so the exactness that the CPU tests prove is checked here on
the device itself, with the trained digits model: ``gaussspec.testing.check_exactness`` (KS on
random projections and energy distance, Holm-corrected over the tested steps) for the free,
frozen and independent drafters, block and token verification, gamma and reflection couplings,
and two planted engine bugs that the same test must reject.

False-alarm budget: each clean case rejects at alpha = 1e-3, so the three clean cases together
raise a false alarm with probability below 0.3%; seeds are fixed (deterministic on one device).

    python benchmarks/gpu_exactness.py [--device cuda] [--chains 2000] [--out benchmarks/results]

Writes ``gpu_exactness.json`` into ``--out`` and prints one line per case; exits 1 when a clean
case is rejected or a mutant is not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import gaussspec as gs  # noqa: E402
from gaussspec.benchmarking.adapter_suites import load_bench_module  # noqa: E402
from gaussspec.testing import check_exactness, planted_mutant  # noqa: E402

ALPHA = 1e-3

# (label, steps, frozen quantity, drafter, draft length, verification, coupling, planted mutant)
CASES = (
    ("free, block / gamma", 100, "sample", "free", 8, "block", "gamma", None),
    ("frozen, token / reflection", 100, "sample", "frozen", 4, "token", "reflection", None),
    ("independent UNet, block / gamma", 100, "sample", "independent", 4, "block", "gamma", None),
    ("mutant always_accept (epsilon frozen)", 25, "epsilon", "free", 4, "block", "gamma",
     "always_accept"),
    ("mutant off_by_one_step", 100, "sample", "free", 4, "block", "gamma", "off_by_one_step"),
)


def run(device: str, chains: int) -> dict:
    """Run every case on ``device`` with ``chains`` chains each; returns the JSON document."""
    bench = load_bench_module("ddpm")
    pipeline = bench.load_digits_pipeline()
    pipeline.unet.to(device)
    draft_unet = bench.load_draft_unet().to(device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    document = {"device": name, "torch": torch.__version__, "chains": chains, "alpha": ALPHA,
                "cases": {}}
    for label, steps, quantity, drafter_name, length, verification, coupling, mutant in CASES:
        kernel = bench._kernel(pipeline, "ddpm", steps, None, quantity)
        drafter = bench._drafter(drafter_name, kernel, draft_unet)
        x0 = kernel.initial_state(chains, torch.Generator(device=device).manual_seed(7))
        generator = torch.Generator(device=device).manual_seed(8)
        start = time.perf_counter()
        with planted_mutant(mutant) if mutant else contextlib.nullcontext():
            report = check_exactness(kernel, drafter, x0, generator, draft_length=length,
                                     verification=verification, coupling=coupling,
                                     num_checked_steps=2)
        rejected = report.rejects(ALPHA)
        document["cases"][label] = {
            "steps": steps, "draft_length": length, "p_value": report.p_value,
            "rejected": rejected, "expected": bool(mutant), "passed": rejected == bool(mutant),
            "block_efficiency": report.speculative_stats.block_efficiency,
            "seconds": time.perf_counter() - start}
        print(f"{label:40s} p = {report.p_value:.3g}  rejected: {rejected}  "
              f"(expected {bool(mutant)})", flush=True)
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--chains", type=int, default=2000, help="chains per case (sample size)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_exactness: torch sees no CUDA device", file=sys.stderr)
        return 2
    document = run(args.device, args.chains)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_exactness.json").write_text(json.dumps(document, indent=1))
    return 0 if all(case["passed"] for case in document["cases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
