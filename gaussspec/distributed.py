"""Many independent chains across processes, GPUs and nodes on ``torch.distributed``.

Launch with torchrun (gloo on CPU, nccl on GPU)::

    torchrun --nproc_per_node=4 my_script.py

where ``my_script.py`` calls :func:`sample_distributed`. Each rank samples a contiguous shard of
the chains; every chain draws from its own random stream seeded by ``(seed, global chain id)``
(:func:`gaussspec.chain_generators`), so the output does not depend on the number of ranks. All
ranks receive the gathered samples and the merged statistics.
"""

from __future__ import annotations

import os

import attrs
import numpy as np
import torch
import torch.distributed as dist

from gaussspec.randomness import chain_generators
from gaussspec.sampler import SampleResult, SpeculativeSampler, sample_chain
from gaussspec.stats import SamplingStats

__all__ = ["sample_distributed", "shard", "init_from_environment"]


def init_from_environment(backend: str | None = None) -> tuple[int, int]:
    """Initialise the default process group from torchrun's variables if needed.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` when not launched by torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def shard(num_chains: int, rank: int, world_size: int) -> range:
    """The contiguous block of global chain ids that ``rank`` samples."""
    base, extra = divmod(num_chains, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _merge(stats: list[dict]) -> SamplingStats:
    first = stats[0]
    merged = SamplingStats(num_chains=sum(s["num_chains"] for s in stats),
                           num_steps=first["num_steps"], draft_length=first["draft_length"])
    for key in ("target_evaluations", "draft_evaluations", "chain_rounds", "steps"):
        setattr(merged, key, sum(s[key] for s in stats))
    for key in ("rounds", "sequential_target_calls", "wall_time", "target_time", "draft_time"):
        setattr(merged, key, max(s[key] for s in stats))  # ranks run side by side
    for key in ("accepted_length_histogram", "drafted_by_position", "accepted_by_position"):
        setattr(merged, key, [int(v) for v in np.sum([s[key] for s in stats], axis=0)])
    return merged


def _gather_rows(tensor: torch.Tensor, counts: list[int], dim: int) -> torch.Tensor:
    """All-gather tensors whose size along ``dim`` differs by rank."""
    largest = max(counts)
    pad = list(tensor.shape)
    pad[dim] = largest - tensor.shape[dim]
    padded = torch.cat([tensor, tensor.new_zeros(pad)], dim=dim).contiguous()
    pieces = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(pieces, padded)
    return torch.cat([p.narrow(dim, 0, c) for p, c in zip(pieces, counts)], dim=dim)


def sample_distributed(
    sampler: SpeculativeSampler | None,
    kernel,
    x0: torch.Tensor,
    seed: int,
    return_trajectory: bool = False,
) -> SampleResult:
    """Sample all chains of ``x0`` split over the ranks of the default process group.

    Args:
        sampler: A :class:`SpeculativeSampler`, or None for the plain chain of ``kernel``.
        kernel: The target kernel (used when ``sampler`` is None).
        x0: Initial states of ALL chains (the same tensor on every rank); each rank moves its
            shard to its own device (``cuda:LOCAL_RANK`` when CUDA is available).
        seed: Base seed; chain ``i`` uses the stream of ``(seed, i)`` on every number of ranks.
        return_trajectory: Gather trajectories too.

    Returns:
        The result for all chains, on every rank; statistics merged (counts summed, rounds and
        times the maximum over ranks).
    """
    rank, world = init_from_environment()
    device = x0.device
    if torch.cuda.is_available() and world > 1 and dist.get_backend() == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    ids = shard(x0.shape[0], rank, world)
    local_x0 = x0[ids.start:ids.stop].to(device)
    generators = chain_generators(seed, ids, device)
    if sampler is None:
        local = sample_chain(kernel, local_x0, generator=generators,
                             return_trajectory=return_trajectory)
    else:
        local = sampler.sample(local_x0, generator=generators, return_trajectory=return_trajectory)
    if world == 1:
        return local
    counts = [len(shard(x0.shape[0], r, world)) for r in range(world)]
    samples = _gather_rows(local.samples, counts, 0)
    trajectory = _gather_rows(local.trajectory, counts, 1) if return_trajectory else None
    stats = [None] * world
    dist.all_gather_object(stats, attrs.asdict(local.stats))
    return SampleResult(samples=samples, trajectory=trajectory, stats=_merge(stats), memory=None)
