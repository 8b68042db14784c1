"""Line-profile the speculative round in the engine-overhead setting of benchmarks/overhead.py.

Setting: d = 3072, B = 8, gamma = 4, free drafter, block verification, float32, the two-layer score
network of ``benchmarks/overhead.py`` (about 8 ms per call on one CPU thread). Needs
``line_profiler``. Writes ``round_profile.txt`` (the full line profile) and ``round_profile.json``
(the engine's largest lines: everything in the round's methods except the kernel calls)
into the output folder.

    python -m gaussspec.benchmarking.profile_round [--out benchmarks/results/bench] [--steps 200]
"""

from __future__ import annotations

import argparse
import io
import json
import linecache
import os
from pathlib import Path

import torch

import gaussspec as gs
from gaussspec import sampler as engine
from gaussspec.benchmarking.adapter_suites import ROOT

__all__ = ["main", "profile_round"]

# The round's methods; a line that calls one of them (or a kernel) is not engine time of its own.
_ROUND_METHODS = ("_round", "_draft", "_draft_noise", "_verify_target", "_compiled_inputs",
                  "_step_compiled", "_step_general", "_evaluations_at")
_NOT_ENGINE = tuple(f"self.{name}(" for name in _ROUND_METHODS[1:]) + (
    "self._target_evaluate(", "self._draft_mean(", "self._target_mean(", "self._target_scan(")


def _overhead_module():
    import importlib.util

    path = ROOT / "benchmarks" / "overhead.py"
    spec = importlib.util.spec_from_file_location("_gaussspec_overhead_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def profile_round(steps: int = 200, chains: int = 8, draft_length: int = 4) -> tuple[str, dict]:
    """Run the overhead setting under line_profiler; returns (report text, summary dict)."""
    from line_profiler import LineProfiler

    kernel = _overhead_module().ScoreNetworkULA(num_steps=steps)
    x0 = torch.zeros(chains, 3072)
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length, "block")
    sampler.sample(x0[:2], generator=torch.Generator().manual_seed(0))  # warm-up (numba, caches)
    profiler = LineProfiler()
    for name in _ROUND_METHODS:
        profiler.add_function(getattr(engine._Run, name))
    profiler.enable_by_count()
    stats = sampler.sample(x0, generator=torch.Generator().manual_seed(1)).stats
    profiler.disable_by_count()
    text = io.StringIO()
    profiler.print_stats(stream=text, output_unit=1e-3, stripzeros=True)
    timings = profiler.get_stats().timings
    unit = profiler.get_stats().unit
    lines, round_ms = [], 0.0
    for (filename, _, function), entries in timings.items():
        for lineno, hits, total in entries:
            source = linecache.getline(filename, lineno).strip()
            lines.append({"line": lineno, "function": function, "hits": hits,
                          "ms_total": total * unit * 1e3,
                          "ms_per_round": total * unit * 1e3 / stats.rounds, "source": source})
            if function.split(".")[-1] == "_round":
                round_ms += total * unit * 1e3  # _round's lines include the nested methods
    engine_lines = [entry for entry in lines if not any(c in entry["source"] for c in _NOT_ENGINE)]
    engine_lines.sort(key=lambda entry: -entry["ms_total"])
    engine_ms = sum(entry["ms_total"] for entry in engine_lines)
    for entry in engine_lines:
        entry["share_of_engine"] = entry["ms_total"] / engine_ms if engine_ms else 0.0
    summary = {
        "setting": {"dimension": 3072, "chains": chains, "draft_length": draft_length,
                    "num_steps": steps, "drafter": "free", "verification": "block",
                    "dtype": "float32", "threads": torch.get_num_threads()},
        "rounds": stats.rounds, "wall_s_profiled": stats.wall_time,
        "target_s": stats.target_time, "draft_s": stats.draft_time,
        "engine_ms_per_round_profiled": engine_ms / stats.rounds,
        "round_ms_per_round_profiled": round_ms / stats.rounds,
        "top_engine_lines": engine_lines[:15],
    }
    return text.getvalue(), summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: profile and write the two files."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/bench")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    text, summary = profile_round(args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "round_profile.txt").write_text(text)
    (out / "round_profile.json").write_text(json.dumps(summary, indent=2))
    print(f"engine {summary['engine_ms_per_round_profiled']:.2f} ms per round (under the profiler) "
          f"of {summary['round_ms_per_round_profiled']:.2f} ms; largest engine lines:")
    for entry in summary["top_engine_lines"][:12]:
        print(f"  {entry['ms_per_round']:6.3f} ms/round {100 * entry['share_of_engine']:5.1f}%  "
              f"{entry['function']} L{entry['line']}: {entry['source'][:80]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
