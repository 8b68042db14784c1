"""Running speculative ULA on a posterior and handing the draws to the ecosystem.

:func:`sample_posterior` runs ``chains`` chains (warm-up, then ``draws * thin`` steps, keeping every
``thin``-th state) in chunks of steps, so memory stays bounded and a progress bar can follow long
runs; ULA is time-homogeneous, so restarting the sampler at chunk boundaries from the last state
changes nothing in the law of the chain. Draws come back as arrays shaped ``(chain, draw, *param)``
under the constrained parameter names, and optionally as an ArviZ ``InferenceData``.
:func:`run_sample_command` is what the command line ``gaussspec sample`` calls.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import attrs
import numpy as np
import torch

import gaussspec as gs
from gaussspec.adapters.langevin.drafts import (
    DraftULAKernel,
    LaplaceDraftKernel,
    _gradient_or_nan,
    find_mode,
    low_precision_draft,
)
from gaussspec.adapters.langevin.kernel import ULAKernel
from gaussspec.adapters.langevin.posteriors import Posterior, posterior as _posterior

__all__ = [
    "DRAFTERS",
    "PosteriorSamples",
    "group_parameters",
    "run_sample_command",
    "sample_posterior",
    "to_inference_data",
]

DRAFTERS = ("none", "free", "frozen", "laplace", "float32", "subsample")
"""Drafter names accepted by :func:`sample_posterior` (``"none"``: plain ULA, no speculation)."""

PRECONDITIONERS = ("laplace", "reference", "identity")

_INDEXED = re.compile(r"^(?P<base>[^\[]+)\[(?P<index>[0-9,]+)\]$")


def group_parameters(names: tuple[str, ...], flat: np.ndarray) -> dict[str, np.ndarray]:
    """Group flat columns ``(..., p)`` named like ``beta[1]`` into arrays ``(..., *shape)``.

    Args:
        names: Constrained names (``"sigma"``, ``"beta[1]"``, ``"beta[2]"``...), 1-based indices.
        flat: Array whose last axis follows ``names``.

    Returns:
        ``{"beta": (..., 2), "sigma": (...)}`` in first-appearance order.
    """
    groups: dict[str, list[tuple[tuple[int, ...], int]]] = {}
    for column, name in enumerate(names):
        match = _INDEXED.match(name)
        base = match["base"] if match else name
        index = tuple(int(i) - 1 for i in match["index"].split(",")) if match else ()
        groups.setdefault(base, []).append((index, column))
    out = {}
    lead = flat.shape[:-1]
    for base, entries in groups.items():
        if entries == [((), entries[0][1])]:
            out[base] = flat[..., entries[0][1]]
            continue
        shape = tuple(max(ix[k] for ix, _ in entries) + 1 for k in range(len(entries[0][0])))
        array = np.full(lead + shape, np.nan, dtype=flat.dtype)
        for index, column in entries:
            array[(Ellipsis, *index)] = flat[..., column]
        out[base] = array
    return out


@attrs.frozen
class PosteriorSamples:
    """Draws of a speculative (or plain) ULA run.

    Attributes:
        posterior_name: The posteriordb name.
        parameter_names: Constrained parameter names, the last axis of :attr:`constrained`.
        constrained: ``(chain, draw, p)`` float64 constrained draws.
        unconstrained: ``(chain, draw, d)`` float64 unconstrained draws (the chain's states).
        accepted_length: ``(chain, draw)`` mean accepted draft length tau over the rounds of the
            chunk that produced the draw (all chains of the run pooled; exact per chain when
            ``chains == 1``); 0 for plain ULA.
        rounds: ``(chain, draw)`` sequential target calls of that chunk per draw kept.
        stats: Totals for the kept part of the run (after warm-up): a JSON-ready dict.
        settings: The run's settings (step size, drafter, ...).
    """

    posterior_name: str
    parameter_names: tuple[str, ...]
    constrained: np.ndarray
    unconstrained: np.ndarray
    accepted_length: np.ndarray
    rounds: np.ndarray
    stats: dict
    settings: dict

    @property
    def draws(self) -> dict[str, np.ndarray]:
        """Constrained draws grouped by parameter: ``{"beta": (chain, draw, 5), "sigma": (chain, draw)}``."""
        return group_parameters(self.parameter_names, self.constrained)

    def __getitem__(self, name: str) -> np.ndarray:
        """``(chain, draw)`` draws of one constrained parameter such as ``"beta[1]"`` or ``"sigma"``."""
        if name not in self.parameter_names:
            raise KeyError(f"unknown parameter {name!r}; parameters: {', '.join(self.parameter_names)}")
        return self.constrained[..., self.parameter_names.index(name)]


def _validate_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _resolve_preconditioner(post: Posterior, preconditioner, laplace_fit):
    if isinstance(preconditioner, torch.Tensor) or preconditioner is None:
        return preconditioner
    if preconditioner == "identity":
        return None
    if preconditioner == "reference":
        return post.reference_covariance()
    if preconditioner == "laplace":
        return torch.linalg.inv(-laplace_fit().hessian)
    raise ValueError(
        f"unknown preconditioner {preconditioner!r}; use one of {PRECONDITIONERS}, None or a tensor"
    )


class _Drafts:
    """Builds the drafter for each chunk's target kernel (the expensive set-up done once)."""

    def __init__(self, post: Posterior, drafter, subsample_size: int | None, seed: int, laplace_fit):
        self.post, self.name, self.seed = post, drafter, seed
        self._laplace_fit = laplace_fit
        self._subsampled = None
        self._user = drafter if isinstance(drafter, gs.Drafter) else None
        self._drafter = None
        if self._user is not None:
            self.name = type(drafter).__name__
            return
        if drafter not in DRAFTERS:
            raise ValueError(f"unknown drafter {drafter!r}; use one of {DRAFTERS} or a gs.Drafter")
        if drafter == "subsample":
            total = post.data_size
            if total is None:
                raise ValueError(
                    f"drafter 'subsample' needs a regression-type posterior; {post.name} has no "
                    "exchangeable data rows"
                )
            size = max(1, total // 2) if subsample_size is None else subsample_size
            generator = torch.Generator().manual_seed(seed + 7919)
            self._subsampled = post.subsampled_log_density(size, generator)
        self._drafter = drafter

    def for_target(self, target: ULAKernel) -> gs.Drafter | None:
        if self._user is not None:
            return self._user
        drafter = self._drafter
        if drafter == "none":
            return None
        if drafter == "free":
            return gs.FreeDrafter()
        if drafter == "frozen":
            return gs.FrozenDrafter()
        if drafter == "laplace":
            return gs.KernelDrafter(LaplaceDraftKernel(target, self._laplace_fit()))
        if drafter == "float32":
            return gs.KernelDrafter(low_precision_draft(target))
        subsampled = self._subsampled
        return gs.KernelDrafter(DraftULAKernel(target, lambda x: _gradient_or_nan(subsampled, x)))


def _merge_stats(total: dict | None, stats: gs.SamplingStats) -> dict:
    part = stats.to_dict()
    if total is None:
        return part
    for key in ("rounds", "sequential_target_calls", "target_evaluations", "draft_evaluations",
                "chain_rounds", "steps", "wall_time", "target_time", "draft_time", "num_steps"):
        total[key] += part[key]
    for key in ("accepted_length_histogram", "drafted_by_position", "accepted_by_position"):
        total[key] = [a + b for a, b in zip(total[key], part[key])]
    return total


def _finish_stats(total: dict | None, draft_length: int) -> dict:
    if total is None:
        return {}
    total["block_efficiency"] = total["steps"] / total["chain_rounds"] if total["chain_rounds"] else None
    total["acceptance_by_position"] = [
        (a / d if d else None) for a, d in zip(total["accepted_by_position"], total["drafted_by_position"])
    ]
    total["overhead_time"] = max(total["wall_time"] - total["target_time"] - total["draft_time"], 0.0)
    total["draft_length"] = draft_length
    return total


def sample_posterior(
    posterior: str | Posterior,
    step_size: float,
    draws: int,
    chains: int = 1,
    drafter: str | gs.Drafter = "free",
    draft_length: int = 8,
    warmup: int = 0,
    thin: int = 1,
    seed: int = 0,
    *,
    preconditioner: str | torch.Tensor | None = "laplace",
    initial: torch.Tensor | None = None,
    subsample_size: int | None = None,
    verification: str = "block",
    chunk_steps: int = 1000,
    progress: bool = False,
    inference_data: bool = False,
):
    """Speculative ULA on a built-in posterior; draws in constrained parameter names.

    Args:
        posterior: A name accepted by :func:`~gaussspec.adapters.langevin.posterior` or a Posterior.
        step_size: ULA step size h.
        draws: Draws kept per chain (after warm-up and thinning).
        chains: Number of chains (run together as one batch).
        drafter: ``"free"``, ``"frozen"`` (the core's self-speculative drafters), ``"laplace"``,
            ``"float32"``, ``"subsample"`` (draft kernels of this adapter), ``"none"`` (plain ULA,
            no speculation) or a ``gs.Drafter``.
        draft_length: gamma, draft steps per round.
        warmup: Steps run and discarded before the first kept step.
        thin: Keep every ``thin``-th state.
        seed: Seed of the run's ``torch.Generator`` (initial states, chains, subsample rows).
        preconditioner: ``"laplace"`` (inverse negative Hessian at the mode, default),
            ``"reference"`` (covariance of posteriordb's reference draws), ``"identity"``/None, or
            a ``(d,)`` / ``(d, d)`` tensor.
        initial: ``(chains, d)`` unconstrained start; default distinct random reference draws.
        subsample_size: Rows kept by the ``"subsample"`` drafter (default half the data).
        verification: ``"block"`` or ``"token"``.
        chunk_steps: Steps per sampler call (rounded up to a multiple of ``thin``): bounds memory.
        progress: Show a progress bar (tqdm) over the run's chunks.
        inference_data: Also return an ArviZ ``InferenceData`` (needs ``arviz``).

    Returns:
        A :class:`PosteriorSamples`, or ``(samples, inference_data)`` when ``inference_data``.
    """
    post = posterior if isinstance(posterior, Posterior) else _posterior(posterior)
    draws = _validate_int(draws, "draws", 1)
    chains = _validate_int(chains, "chains", 1)
    draft_length = _validate_int(draft_length, "draft_length", 1)
    warmup = _validate_int(warmup, "warmup", 0)
    thin = _validate_int(thin, "thin", 1)
    seed = _validate_int(seed, "seed", 0)
    chunk_steps = _validate_int(chunk_steps, "chunk_steps", 1)
    chunk_steps = thin * math.ceil(chunk_steps / thin)

    cache: dict = {}

    def laplace_fit():
        if "fit" not in cache:
            cache["fit"] = find_mode(post.log_density, post.initial_point())
        return cache["fit"]

    precond = _resolve_preconditioner(post, preconditioner, laplace_fit)
    drafts = _Drafts(post, drafter, subsample_size, seed, laplace_fit)
    generator = torch.Generator().manual_seed(seed)
    if initial is None:
        x = post.initial_state(chains, generator)
    else:
        x = torch.as_tensor(initial, dtype=torch.float64).clone()
        if x.shape != (chains, post.dimension):
            raise ValueError(f"initial must have shape ({chains}, {post.dimension}), got {tuple(x.shape)}")

    def run(x, steps, keep):
        key = steps
        if key not in cache:
            target = ULAKernel(post, step_size, steps, preconditioner=precond)
            cache[key] = (target, drafts.for_target(target))
        target, chunk_drafter = cache[key]
        if chunk_drafter is None:
            result = gs.sample_chain(target, x, generator=generator, return_trajectory=keep)
        else:
            sampler = gs.SpeculativeSampler(target, chunk_drafter, draft_length=draft_length,
                                            verification=verification)
            result = sampler.sample(x, generator=generator, return_trajectory=keep)
        return result

    total_steps = warmup + draws * thin
    bar = _progress_bar(total_steps, progress)
    start = time.perf_counter()
    remaining = warmup
    while remaining > 0:  # warm-up: nothing kept, stats not counted
        steps = min(chunk_steps, remaining)
        x = run(x, steps, keep=False).samples
        remaining -= steps
        bar.update(steps)
    warmup_time = time.perf_counter() - start

    kept, accepted, rounds = [], [], []
    total = None
    remaining = draws * thin
    while remaining > 0:
        steps = min(chunk_steps, remaining)
        result = run(x, steps, keep=True)
        x = result.samples
        states = result.trajectory[thin::thin]  # (steps / thin, chains, d)
        kept.append(states)
        stats = result.stats
        mean_tau = (stats.steps - stats.chain_rounds) / stats.chain_rounds if stats.chain_rounds else 0.0
        if stats.draft_length == 0:
            mean_tau = 0.0
        accepted.append(np.full((chains, states.shape[0]), mean_tau))
        rounds.append(np.full((chains, states.shape[0]), stats.sequential_target_calls / states.shape[0]))
        total = _merge_stats(total, stats)
        remaining -= steps
        bar.update(steps)
    bar.close()

    unconstrained = torch.cat(kept, 0).transpose(0, 1).contiguous()  # (chain, draw, d)
    constrained = post.constrain(unconstrained)
    stats = _finish_stats(total, draft_length if drafts.name != "none" else 0)
    stats["warmup_time"] = warmup_time
    stats["total_time"] = time.perf_counter() - start
    settings = {
        "posterior": post.name,
        "step_size": float(step_size),
        "draws": draws,
        "chains": chains,
        "drafter": drafts.name,
        "draft_length": draft_length,
        "warmup": warmup,
        "thin": thin,
        "seed": seed,
        "preconditioner": preconditioner if isinstance(preconditioner, str) or preconditioner is None else "tensor",
        "verification": verification,
    }
    samples = PosteriorSamples(
        posterior_name=post.name,
        parameter_names=post.parameter_names,
        constrained=constrained.numpy(),
        unconstrained=unconstrained.numpy(),
        accepted_length=np.concatenate(accepted, 1),
        rounds=np.concatenate(rounds, 1),
        stats=stats,
        settings=settings,
    )
    if inference_data:
        return samples, to_inference_data(samples)
    return samples


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, no error
        return _NoBar()
    return tqdm(total=total, unit="step", desc="ULA")


def to_inference_data(samples: PosteriorSamples):
    """An ArviZ ``InferenceData`` with ``posterior`` and ``sample_stats`` groups.

    ``sample_stats`` holds ``accepted_length`` and ``rounds`` (both ``(chain, draw)``, see
    :class:`PosteriorSamples`); the run's totals and settings go into the attributes as JSON.

    Raises:
        ImportError: if arviz is not installed (it is optional: ``pip install arviz``).
    """
    try:
        import arviz
    except ImportError as error:
        raise ImportError(
            "to_inference_data needs the optional dependency arviz; install it with "
            "`pip install arviz` (or `pip install gaussspec[arviz]`)"
        ) from error
    idata = arviz.from_dict(
        posterior=samples.draws,
        sample_stats={"accepted_length": samples.accepted_length, "rounds": samples.rounds},
    )
    attributes = {
        "gaussspec_stats": json.dumps(samples.stats),
        "gaussspec_settings": json.dumps(samples.settings),
        "posterior_name": samples.posterior_name,
    }
    idata.posterior.attrs.update(attributes)
    idata.sample_stats.attrs.update(attributes)
    return idata


def run_sample_command(
    posterior: str,
    step_size: float,
    draws: int,
    chains: int,
    drafter: str,
    draft_length: int,
    warmup: int,
    thin: int,
    seed: int,
    out: str | Path,
    progress: bool = False,
) -> dict:
    """What ``gaussspec sample --posterior NAME --step-size H --draws N ...`` runs.

    Writes ``out`` (``.npz`` added if missing): one ``(chain, draw)`` array per constrained
    parameter name (``beta[1]``, ``sigma``...) plus ``__unconstrained__`` ``(chain, draw, d)``;
    and ``<out>.json`` beside it with the settings and the run's stats (rounds, target
    evaluations, block efficiency, accepted-length histogram, times).

    Args:
        posterior: Posterior name (posteriordb or short form).
        step_size: ULA step size.
        draws: Draws kept per chain.
        chains: Number of chains.
        drafter: One of :data:`DRAFTERS`.
        draft_length: gamma.
        warmup: Warm-up steps.
        thin: Thinning.
        seed: Random seed.
        out: Output path of the draws.
        progress: Show a progress bar.

    Returns:
        ``{"draws": path, "stats": path, "summary": {...}}``.
    """
    samples = sample_posterior(
        posterior, step_size, draws, chains, drafter, draft_length, warmup, thin, seed,
        progress=progress,
    )
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: samples[name] for name in samples.parameter_names}
    arrays["__unconstrained__"] = samples.unconstrained
    np.savez(out, **arrays)
    stats_path = out.with_suffix(".json")
    summary = {
        name: {"mean": float(samples[name].mean()), "sd": float(samples[name].std(ddof=1))}
        for name in samples.parameter_names
    }
    stats_path.write_text(
        json.dumps({"settings": samples.settings, "stats": samples.stats, "summary": summary}, indent=2)
    )
    return {"draws": str(out), "stats": str(stats_path), "summary": summary}
