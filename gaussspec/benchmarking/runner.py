"""Entry points: :func:`run_suite` and the ``gaussspec bench`` argument parser :func:`main`."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from gaussspec.benchmarking import harness
from gaussspec.benchmarking.allocator import pin_glibc_heap
from gaussspec.benchmarking.report import SuiteResult, machine_meta, write_result

__all__ = ["SUITES", "run_suite", "main", "DEFAULT_OUT"]

# suite name -> module (imported lazily: the adapter suites need optional dependencies)
SUITES = {
    "synthetic": "gaussspec.benchmarking.synthetic",
    "comparisons": "gaussspec.benchmarking.comparisons",
    "adaptive": "gaussspec.benchmarking.adaptive_suite",
    "ddpm": "gaussspec.benchmarking.adapter_suites",
    "langevin": "gaussspec.benchmarking.adapter_suites",
    "md": "gaussspec.benchmarking.adapter_suites",
}
DEFAULT_OUT = "benchmarks/results/bench"


def run_suite(name: str, out_dir: str, quick: bool = False, repeats: int = 3,
              device: str = "cpu", figures_dir: str | None = None, tiny: bool = False,
              command: str | None = None, allocator: str = "pinned") -> dict:
    """Run one benchmark suite and write its JSON, markdown and PNG figures into ``out_dir``.

    Args:
        name: One of :data:`SUITES`.
        out_dir: Results folder (created if needed).
        quick: Smaller sizes (each suite about two minutes on one loaded CPU core).
        repeats: Interleaved repeats per case (medians are reported).
        device: ``"cpu"`` or ``"cuda"`` (used by the ``ddpm`` suite; the others run on CPU).
        figures_dir: Also copy the figures there (e.g. ``docs/figures``).
        tiny: Even smaller sizes, for smoke tests (``synthetic``, ``comparisons`` and
            ``adaptive``).
        command: The command line to record (default: a ``gaussspec bench`` line).
        allocator: ``"pinned"``: pin glibc's heap thresholds first
            (:func:`gaussspec.benchmarking.allocator.pin_glibc_heap`; for the rest of the
            process), so that calls are not timed on the allocator's history; ``"default"``:
            leave the allocator as it is. What applied is recorded in ``meta["allocator"]``.

    Returns:
        The JSON document written to ``<out_dir>/<name>.json``: keys ``suite``, ``meta``,
        ``summary``, ``notes``, ``sections`` (title, note, rows), ``figures`` and ``files``.
    """
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; valid: {', '.join(SUITES)}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if allocator not in ("pinned", "default"):
        raise ValueError(f"allocator must be 'pinned' or 'default', got {allocator!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if command is None:
            command = (f"gaussspec bench {name} --out {out_dir}" + (" --quick" if quick else "")
                       + f" --repeats {repeats}" + (f" --device {device}" if device != "cpu" else ""))
        pinned = pin_glibc_heap() if allocator == "pinned" else None
        meta = {**machine_meta(device), "command": command, "quick": quick, "tiny": tiny,
                "repeats": repeats, "allocator": pinned or "default",
                "waves": harness.WAVES,  # each repeat's runs advance together in turns:
                "min_turn": harness.MIN_TURN}  # at most WAVES, of at least MIN_TURN seconds
        result = SuiteResult(suite=name, meta=meta)
        start = time.perf_counter()
        module = importlib.import_module(SUITES[name])
        if name in ("ddpm", "langevin", "md"):
            module.run(name, result, out, quick, repeats, device)
        else:
            module.run(result, out, quick, repeats, tiny)
        result.meta["seconds"] = time.perf_counter() - start
        return write_result(result, out, Path(figures_dir) if figures_dir else None)
    finally:
        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``gaussspec bench``."""
    parser = argparse.ArgumentParser(
        prog="gaussspec bench",
        description="Measure speculative against plain sampling; writes JSON, markdown and PNG.")
    parser.add_argument("suite", choices=[*SUITES, "all"], help="the suite to run")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 2 minutes each)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ddpm suite)")
    parser.add_argument("--figures-dir", default=None, help="also copy the PNG figures here")
    parser.add_argument("--allocator", choices=("pinned", "default"), default="pinned",
                        help="pinned (default): pin glibc's mmap and trim thresholds, so that a "
                             "call's time does not depend on the allocation sizes before it; "
                             "default: leave the C allocator as it is")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke-test sizes (synthetic, comparisons, adaptive); numbers mean little")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``gaussspec bench SUITE [--out DIR] [--quick] [--repeats N]``; returns the exit code."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        print("gaussspec bench: --repeats must be >= 1", file=sys.stderr)
        return 2
    names = list(SUITES) if args.suite == "all" else [args.suite]
    given = list(argv) if argv is not None else sys.argv[1:]
    for name in names:
        words = [name if word == "all" else word for word in given]
        command = "gaussspec bench " + " ".join(shlex.quote(word) for word in words)
        document = run_suite(name, args.out, args.quick, args.repeats, args.device,
                             args.figures_dir, tiny=args.tiny, command=command,
                             allocator=args.allocator)
        print(Path(document["files"]["markdown"]).read_text())
        print(f"wrote {document['files']['json']}, {document['files']['markdown']} and "
              f"{len(document['files']['figures'])} figure(s)")
    return 0
