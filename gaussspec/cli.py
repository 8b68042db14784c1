"""The ``gaussspec`` command line: ``check``, ``sample``, ``bench`` and ``demo``.

Exit codes: 0 success (``check``: no evidence of a difference), 1 (``check``: a difference was
found), 2 usage or load errors.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import gaussspec as gs
from gaussspec.coupling import COUPLINGS
from gaussspec.drafters import DRAFTER_NAMES
from gaussspec.verification import VERIFICATIONS

__all__ = ["main", "load_factory"]


class UsageError(Exception):
    """A command-line problem reported with exit code 2."""


def load_factory(spec: str):
    """Resolve ``MODULE:FACTORY`` (or ``path/to/file.py:FACTORY``) and call the factory.

    Raises:
        UsageError: The spec is malformed, does not import, or does not return a kernel.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected MODULE:FACTORY (e.g. mypkg.kernels:make_target), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"no such file {module_name!r} in {spec!r}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - any import failure is a load error
        raise UsageError(f"cannot import {module_name!r} from {spec!r}: {error}") from error
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        raise UsageError(f"{module_name!r} has no callable {attribute!r} (from {spec!r})")
    try:
        kernel = factory()
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"{spec} raised {type(error).__name__}: {error}") from error
    if not isinstance(kernel, gs.GaussianKernel):
        raise UsageError(f"{spec} returned {type(kernel).__name__}, not a gaussspec.GaussianKernel")
    return kernel


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _add_kernel_options(parser: argparse.ArgumentParser, require_target: bool) -> None:
    parser.add_argument("--target", required=require_target, metavar="MODULE:FACTORY",
                        help="zero-argument callable returning the target GaussianKernel")
    drafts = parser.add_mutually_exclusive_group()
    drafts.add_argument("--draft", metavar="MODULE:FACTORY", help="an independent draft kernel")
    drafts.add_argument("--drafter", choices=sorted(DRAFTER_NAMES),
                        help="a self-speculative drafter reusing target evaluations")
    parser.add_argument("--chains", type=_positive_int, default=1000)
    parser.add_argument("--draft-length", type=_positive_int, default=4)
    parser.add_argument("--verification", choices=VERIFICATIONS, default="block")
    parser.add_argument("--coupling", choices=COUPLINGS, default="gamma")
    parser.add_argument("--seed", type=int, default=0)


def _build(args):
    target = load_factory(args.target)
    if args.draft:
        drafter = gs.KernelDrafter(load_factory(args.draft))
    elif args.drafter:
        drafter = DRAFTER_NAMES[args.drafter]()
    else:
        raise UsageError("give --draft MODULE:FACTORY or --drafter frozen|free")
    generator = torch.Generator().manual_seed(args.seed)
    try:
        x0 = target.initial_state(args.chains, generator)
    except NotImplementedError as error:
        raise UsageError(str(error)) from error
    try:
        sampler = gs.SpeculativeSampler(target, drafter, args.draft_length, args.verification,
                                        args.coupling)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from error
    return target, drafter, sampler, x0, generator


def _command_check(args) -> int:
    from gaussspec.testing import check_exactness

    target, drafter, _, x0, generator = _build(args)
    report = check_exactness(target, drafter, x0, generator, args.draft_length, args.verification,
                             args.coupling, num_checked_steps=args.steps, seed=args.seed)
    print(f"target {args.target}  drafter {args.draft or args.drafter}  chains {args.chains}  "
          f"draft length {args.draft_length}  {args.verification}/{args.coupling}")
    print(f"{'step':>6}  {'test':<34} {'p-value':>10}")
    for step, test in report.tests.items():
        print(f"{step:>6}  {test.name:<34} {test.p_value:>10.4g}")
    spec, plain = report.speculative_stats, report.plain_stats
    print(f"block efficiency {spec.block_efficiency:.3f}; sequential target calls "
          f"{spec.sequential_target_calls} speculative vs {plain.sequential_target_calls} plain")
    different = report.rejects(args.alpha)
    verdict = "DIFFERENCE FOUND" if different else "no evidence of a difference"
    print(f"overall p-value {report.p_value:.4g} at alpha {args.alpha}: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({**report.to_dict(), "alpha": args.alpha,
                                               "difference": different}, indent=2, default=str))
    return 1 if different else 0


def _command_sample(args) -> int:
    if args.posterior:
        try:
            from gaussspec.adapters.langevin import run_sample_command
        except ImportError as error:  # pragma: no cover - adapter missing
            raise UsageError(f"the Langevin adapter is unavailable: {error}") from error
        if args.step_size is None:
            raise UsageError("--posterior needs --step-size H")
        try:
            summary = run_sample_command(
                posterior=args.posterior, step_size=args.step_size, draws=args.draws,
                chains=args.chains, drafter=args.drafter or args.langevin_drafter,
                draft_length=args.draft_length, warmup=args.warmup, thin=args.thin,
                seed=args.seed, out=args.out, progress=args.progress)
        except (KeyError, ValueError) as error:
            raise UsageError(str(error)) from error
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if not args.target:
        raise UsageError("give --target MODULE:FACTORY (or --posterior NAME)")
    _, _, sampler, x0, generator = _build(args)
    result = sampler.sample(x0, generator=generator, return_trajectory=args.trajectory,
                            progress=args.progress)
    out = Path(args.out if args.out.endswith(".npz") else args.out + ".npz")
    arrays = {"samples": result.samples.detach().cpu().numpy()}
    if result.trajectory is not None:
        arrays["trajectory"] = result.trajectory.detach().cpu().numpy()
    np.savez(out, **arrays)
    stats_path = out.with_suffix(".json")
    stats_path.write_text(result.stats.to_json())
    print(f"wrote {out} and {stats_path}: {result.stats.rounds} rounds, block efficiency "
          f"{result.stats.block_efficiency:.3f}")
    return 0


def _command_demo(args) -> int:
    from gaussspec.testing.chains import DoubleWellLangevinKernel
    from gaussspec.testing import check_exactness

    torch.manual_seed(args.seed)
    target = DoubleWellLangevinKernel(dimension=2, step_size=0.02, num_steps=args.steps)
    x0 = target.initial_state(args.chains)
    rows = []
    plain = gs.sample_chain(target, x0, generator=torch.Generator().manual_seed(args.seed))
    rows.append(("plain", plain.stats))
    for name, drafter in (("free", gs.FreeDrafter()), ("frozen", gs.FrozenDrafter())):
        sampler = gs.SpeculativeSampler(target, drafter, args.draft_length, "block")
        result = sampler.sample(x0, generator=torch.Generator().manual_seed(args.seed))
        rows.append((name, result.stats))
    print(f"ULA on a double well, {args.chains} chains x {args.steps} steps, draft length "
          f"{args.draft_length}, block verification")
    print(f"{'sampler':<8} {'target calls':>13} {'block eff.':>11} {'wall s':>8} {'call ratio':>11}")
    for name, stats in rows:
        print(f"{name:<8} {stats.sequential_target_calls:>13} {stats.block_efficiency:>11.3f} "
              f"{stats.wall_time:>8.3f} "
              f"{plain.stats.sequential_target_calls / stats.sequential_target_calls:>10.2f}x")
    report = check_exactness(target, gs.FreeDrafter(), target.initial_state(1000),
                             torch.Generator().manual_seed(args.seed + 1), args.draft_length)
    print(f"exactness check (free drafter, 1000 chains): p = {report.p_value:.3g} "
          f"({'difference found' if report.rejects(1e-3) else 'no evidence of a difference'})")
    return 0


def _command_bench(args) -> int:
    try:
        from gaussspec.benchmarking import main as bench_main
    except ImportError as error:
        raise UsageError(f"the benchmark suites are unavailable: {error}") from error
    return int(bench_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gaussspec`` command."""
    parser = argparse.ArgumentParser(prog="gaussspec", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="test speculative against plain chains")
    _add_kernel_options(check, require_target=True)
    check.add_argument("--alpha", type=float, default=1e-3, help="false-alarm level")
    check.add_argument("--steps", type=_positive_int, default=4, help="steps to test")
    check.add_argument("--json", metavar="FILE", help="write the report as JSON")
    check.set_defaults(run=_command_check)

    sample = commands.add_parser("sample", help="sample speculatively and write .npz + stats")
    _add_kernel_options(sample, require_target=False)
    sample.add_argument("--out", default="samples.npz", help="output .npz (stats beside it)")
    sample.add_argument("--trajectory", action="store_true", help="also store trajectories")
    sample.add_argument("--progress", action="store_true")
    sample.add_argument("--posterior", metavar="NAME", help="Langevin adapter: a built-in posterior")
    sample.add_argument("--step-size", type=float, help="Langevin adapter: ULA step size")
    sample.add_argument("--draws", type=_positive_int, default=1000, help="Langevin: draws/chain")
    sample.add_argument("--warmup", type=int, default=0, help="Langevin: warm-up steps")
    sample.add_argument("--thin", type=_positive_int, default=1, help="Langevin: thinning")
    sample.add_argument("--langevin-drafter", default="free",
                        help="Langevin drafters: none, free, frozen, laplace, float32, subsample")
    sample.set_defaults(run=_command_sample)

    bench = commands.add_parser(
        "bench", help="run a benchmark suite (see 'gaussspec bench --help')", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_command_bench)

    demo = commands.add_parser("demo", help="the built-in example: ULA on a double well")
    demo.add_argument("--chains", type=_positive_int, default=8)
    demo.add_argument("--steps", type=_positive_int, default=2000)
    demo.add_argument("--draft-length", type=_positive_int, default=8)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_command_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gaussspec`` command; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the suites parse their own options
        try:
            return _command_bench(argparse.Namespace(rest=argv[1:]))
        except UsageError as error:
            print(f"gaussspec bench: error: {error}", file=sys.stderr)
            return 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors already
        return int(exit_.code or 0)
    if getattr(args, "command", None) == "sample" and args.chains == 1000 and args.posterior:
        args.chains = 1
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"gaussspec {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
