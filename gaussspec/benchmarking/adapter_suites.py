"""Suites ``ddpm``, ``langevin`` and ``md``: the adapters' kernels and drafters, re-timed.

Each suite loads the adapter's own benchmark script (``benchmarks/<name>_bench.py``, found beside
the installed package in a source checkout) for its builders (models, kernels, drafters, start
states) and times them with this package's interleaved harness: the plain chain and every
speculative configuration of a case run in turn, repeat after repeat, and medians are reported.
If the adapter or its script cannot be imported, the suite writes a note and no table.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

import torch

import gaussspec as gs
from gaussspec.benchmarking import harness
from gaussspec.benchmarking.report import Column, Section, SuiteResult, new_figure, save_figure

__all__ = ["run", "load_bench_module"]

ROOT = Path(gs.__file__).resolve().parent.parent

COLUMNS = (Column("case", "case"), Column("sampler", "label"),
           Column("block eff.", "block_efficiency", "{:.2f}"),
           Column("mean gamma", "mean_draft_length", "{:.2f}"),
           Column("seq. calls", "sequential_target_calls"),
           Column("wall s", "wall_s", "{:.3f}"), Column("plain s", "plain_wall_s", "{:.3f}"),
           Column("engine share", "overhead_share", "{:.1%}"),
           Column("runs spread", "wall_spread", "{:.0%}"),
           Column("speed-up", "speedup", "{:.2f}x"))


def load_script(stem: str):
    """Import the script ``benchmarks/<stem>.py`` (not a package) as a fresh module.

    Raises:
        ImportError: The script is not there (an installed wheel) or it fails to import.
    """
    path = ROOT / "benchmarks" / f"{stem}.py"
    if not path.is_file():
        raise ImportError(f"{path} not found (run from a source checkout of gaussspec)")
    spec = importlib.util.spec_from_file_location(f"_gaussspec_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - any failure means: skip this suite with a note
        raise ImportError(f"cannot import {path.name}: {type(error).__name__}: {error}") from error
    return module


def load_bench_module(name: str):
    """Import ``benchmarks/<name>_bench.py`` (which imports the adapter) as a module.

    Raises:
        ImportError: The script is not there (an installed wheel) or it, or its adapter, fails
            to import.
    """
    return load_script(f"{name}_bench")


def _range(row) -> str:
    """A row's fastest and slowest run, in ms."""
    return f"{min(row['wall_s_all']) * 1e3:.0f}..{max(row['wall_s_all']) * 1e3:.0f} ms"


def _slower_in(row, other) -> str:
    """``"k of n"``: the paired repeats in which ``row`` was slower than ``other``."""
    return "{} of {}".format(*harness.slower_in(row, other))


def _print(row):
    print(f"  {row['label']:34s} wall {row['wall_s']:8.3f} s  BE {row['block_efficiency']:5.2f}  "
          f"x{row['speedup']:.2f}", flush=True)


def _measure_case(case: str, plain_kernel, x0, contenders, repeats, rows: list) -> None:
    print(f"case: {case}", flush=True)
    for row in harness.measure(plain_kernel, x0, [harness.plain(), *contenders], repeats, seed=50,
                               on_row=_print):
        row["case"] = case
        rows.append(row)


def _ddpm(result: SuiteResult, quick: bool, repeats: int, device: str) -> list:
    bench = load_bench_module("ddpm")
    pipeline = bench.load_digits_pipeline()
    pipeline.unet.to(device)
    draft_unet = bench.load_draft_unet().to(device)
    on_gpu = str(device).startswith("cuda")
    steps = 100 if quick else (1000 if on_gpu else 250)
    lengths = (4, 8) if quick else (4, 8, 16)
    result.meta["sizes"] = {"steps": steps, "batches": [1, 16], "lengths": list(lengths)}
    # warm-up (cuDNN/numba/first calls) on a short chain
    warm = bench._kernel(pipeline, "ddpm", 10, None, "sample")
    gen = torch.Generator(device=device).manual_seed(0)
    gs.SpeculativeSampler(warm, gs.FreeDrafter(), 4).sample(warm.initial_state(2, gen), generator=gen)
    rows = []
    for batch in (1, 16):
        kernel = bench._kernel(pipeline, "ddpm", steps, None, "sample")
        x0 = kernel.initial_state(batch, torch.Generator(device=device).manual_seed(1))
        contenders = [harness.speculative(kernel, gs.FreeDrafter(), g, drafter_name="free",
                                          label=f"free (sample) block g={g}") for g in lengths]
        if not quick:
            contenders.append(harness.speculative(kernel, gs.FrozenDrafter(), 8, drafter_name="frozen",
                                                  label="frozen (sample) block g=8"))
            contenders.append(harness.speculative(
                kernel, bench._drafter("independent", kernel, draft_unet), 8,
                drafter_name="independent UNet", label="independent UNet block g=8"))
        contenders.append(harness.adaptive(kernel, gs.FreeDrafter(), 16, drafter_name="free",
                                           label="free adaptive (max 16)"))
        _measure_case(f"DDPM K={steps} batch {batch}", kernel, x0, contenders, repeats, rows)
    return rows


def _langevin(result: SuiteResult, quick: bool, repeats: int, device: str) -> list:
    bench = load_bench_module("langevin")
    names = bench.langevin.posterior_names()
    if quick:
        names = [n for n in names if n.split("-")[0] in ("eight_schools", "arK")]
    steps = 1000 if quick else 4000  # one chain: ~100-1000 rounds, the policy's start-up amortized
    # gp_pois_regr's ULA chain (h = 0.01, a Poisson likelihood) leaves the region where its log
    # density is finite within 4000 steps on some paths: its runs keep 1000 steps
    short = {"gp_pois_regr": 1000}
    lengths = (4, 16) if quick else (2, 4, 8, 16, 32)
    result.meta["sizes"] = {"steps": steps, "posteriors": list(names), "lengths": list(lengths),
                            "steps_override": short}
    rows = []
    for name in names:
        setup = bench._Setup(name, min(steps, short.get(name.split("-")[0], steps)), 1)
        contenders = []
        for kind in ("free", "laplace"):
            drafter = bench.make_drafter(kind, setup.target, setup.post, setup.fit)
            contenders += [harness.speculative(setup.target, drafter, g, drafter_name=kind,
                                               label=f"{kind} block g={g}") for g in lengths]
            contenders.append(harness.adaptive(setup.target, drafter, 32, drafter_name=kind,
                                               label=f"{kind} adaptive (max 32)"))
        _measure_case(f"{name.split('-')[0]} (d={setup.post.dimension})", setup.target, setup.x0,
                      contenders, repeats, rows)
    return rows


def _md(result: SuiteResult, quick: bool, repeats: int, device: str) -> list:
    bench = load_bench_module("md")
    md = bench.md
    vacuum, targets = bench.build_targets()
    chosen = ("vacuum",) if quick else ("vacuum", "implicit")
    timesteps = (0.001,) if quick else (0.001, 0.002)
    steps = 200 if quick else 1000
    lengths = (4, 16) if quick else (4, 8, 16)
    result.meta["sizes"] = {"steps": steps, "targets": list(chosen), "timesteps_ps": list(timesteps),
                            "lengths": list(lengths), "integrator": "baoab"}
    rows = []
    for name in chosen:
        target = targets[name]
        for dt in timesteps:
            velocities = md.maxwell_boltzmann_velocities(vacuum.masses, bench.TEMPERATURE, 1,
                                                         torch.Generator().manual_seed(0))
            x0 = bench.initial_state("baoab", vacuum.positions, velocities)
            setups = {s[0]: s for s in bench.drafter_setups("baoab", target, vacuum.masses, dt, steps,
                                                           velocities, bench.FRICTION)}
            plain_kernel = bench.make_kernel("baoab", target["force"], vacuum.masses, dt, steps,
                                             None, velocities, bench.FRICTION)
            _, split, free, _ = setups["mts-free"]
            contenders = [harness.speculative(split, free, g, drafter_name="mts-free",
                                              label=f"mts-free block g={g}") for g in lengths]
            if not quick:
                contenders.append(harness.speculative(split, setups["mts-frozen"][2], 16,
                                                      drafter_name="mts-frozen",
                                                      label="mts-frozen block g=16"))
            contenders.append(harness.adaptive(split, free, 32, drafter_name="mts-free",
                                               label="mts-free adaptive (max 32)"))
            _measure_case(f"{name} BAOAB dt={dt * 1000:g} fs", plain_kernel, x0, contenders,
                          repeats, rows)
    return rows


_RUNNERS = {"ddpm": _ddpm, "langevin": _langevin, "md": _md}
_NOTES = {
    "ddpm": "The embedded 8x8 digits UNet (DDPMScheduler), free drafter freezing the clean-image "
            "prediction unless named; the plain chain runs the same kernel.",
    "langevin": "One ULA chain per posterior (step size and preconditioner as in "
                "benchmarks/langevin_bench.py), 4000 steps (gp_pois_regr: 1000, its chain can "
                "leave the region of finite density in longer runs), block verification.",
    "md": "Alanine dipeptide, BAOAB at 300 K, friction 1/ps, one chain; the plain chain runs the "
          "unsplit kernel, the speculative runs the multiple time-step split (same law).",
}


def run(name: str, result: SuiteResult, out_dir: Path, quick: bool, repeats: int, device: str) -> None:
    """Fill ``result`` for one adapter suite, or a note saying why it was skipped."""
    if device != "cpu" and name != "ddpm":
        result.notes.append(f"the {name} suite runs on CPU only; --device {device} ignored")
        device = "cpu"
    harness.warm_up()
    try:
        rows = _RUNNERS[name](result, quick, repeats, device)
    except ImportError as error:
        result.notes.append(f"skipped: the {name} adapter or its benchmark script is unavailable "
                            f"({error})")
        print(result.notes[-1], file=sys.stderr)
        traceback.print_exc()
        return
    result.sections.append(Section(f"{name}: speculative beside plain", _NOTES[name], COLUMNS, rows))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    figure, axes = new_figure(len(cases), width=3.6, height=3.8)
    for axis, case in zip(axes, cases):
        mine = [r for r in rows if r["case"] == case and r["kind"] != "plain"]
        colours = ["black" if r["kind"] == harness.ADAPTIVE else "tab:blue" for r in mine]
        axis.barh([r["label"] for r in mine], [r["speedup"] for r in mine], color=colours)
        axis.axvline(1.0, color="red", lw=1.0)
        axis.set(xlabel="wall-clock speed-up over plain", title=case)
        axis.tick_params(axis="y", labelsize=7)
    result.figures.append((save_figure(figure, out_dir, f"bench_{name}.png"),
                           f"{name}: wall-clock speed-up over the plain chain (red line), "
                           "adaptive in black."))
    for case in cases:
        mine = [r for r in rows if r["case"] == case]
        fixed = [r for r in mine if r["kind"] == "speculative"]
        best = max(fixed, key=lambda r: r["speedup"])
        for ada in (r for r in mine if r["kind"] == harness.ADAPTIVE):
            best_same = harness.best_fixed(mine, ada)
            result.summary.append(
                f"{case}: best fixed {best['label']} {best['speedup']:.2f}x; {ada['label']} "
                f"{ada['speedup']:.2f}x ({ada['wall_s'] / best_same['wall_s'] - 1:+.1%} vs the best "
                f"fixed {ada['drafter']}, {best_same['label']}, "
                f"{ada['wall_s'] / ada['plain_wall_s'] - 1:+.1%} vs plain; runs "
                f"{_range(ada)} against {_range(best_same)} and plain {_range(mine[0])}; "
                f"slower than the best fixed in {_slower_in(ada, best_same)} paired repeats, "
                f"than plain in {_slower_in(ada, mine[0])}).")
