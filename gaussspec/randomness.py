"""Where the engine's random numbers come from.

* One ``torch.Generator`` for the whole batch (fast: one call draws for every chain).
* One generator per chain (a list): each chain's draws come from its own stream and depend only
  on that chain's own history, so a chain's output does not depend on which other chains share
  its batch, process or GPU (this is what makes multi-process runs rank-invariant).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["Randomness", "chain_generators"]


def chain_generators(seed: int, chain_ids, device="cpu") -> list[torch.Generator]:
    """One generator per chain, seeded from ``(seed, global chain id)`` only."""
    out = []
    for chain in chain_ids:
        sequence = np.random.SeedSequence([int(seed), int(chain)])
        out.append(torch.Generator(device=device).manual_seed(int(sequence.generate_state(1)[0])))
    return out


class Randomness:
    """Random draws for a batch of chains, shared-stream or per-chain.

    Args:
        generator: A ``torch.Generator``, ``None`` (torch's default), or a sequence with one
            generator per chain.
        num_chains: Chains in the batch.
        device: Device of the draws.
    """

    def __init__(self, generator, num_chains: int, device: torch.device):
        self.device = device
        if generator is None or isinstance(generator, torch.Generator):
            self.shared, self.per_chain = generator, None
        elif isinstance(generator, Sequence) and all(
            isinstance(g, torch.Generator) for g in generator
        ):
            if len(generator) != num_chains:
                raise ValueError(
                    f"got {len(generator)} generators for {num_chains} chains; pass one "
                    "torch.Generator, or exactly one per chain"
                )
            self.shared, self.per_chain = None, list(generator)
        else:
            raise TypeError(
                "generator must be a torch.Generator, None, or a list with one torch.Generator "
                f"per chain; got {type(generator).__name__}"
            )
        for g in [self.shared] if self.per_chain is None else self.per_chain:
            if g is not None and g.device.type != torch.device(device).type:
                raise ValueError(
                    f"the generator lives on {g.device} but the states on {device}; create it on "
                    "the states' device: torch.Generator(device=x0.device)"
                )

    def normal(self, chains: np.ndarray, counts: np.ndarray | None, shape, dtype) -> torch.Tensor:
        """Standard normals: ``(n, max(counts), *shape)``, or ``(n, *shape)`` if counts is None.

        Per chain, only its own ``counts[b]`` draws come from its stream (the rest is padding).
        """
        return self._draw(torch.randn, chains, counts, tuple(shape), dtype)

    def uniform(self, chains: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
        """Uniform(0, 1) variates in float64 on the host, shaped like :meth:`normal` with no event."""
        return self._draw(torch.rand, chains, counts, (), torch.float64).cpu().numpy()

    def _draw(self, fn, chains, counts, shape, dtype):
        n = len(chains)
        width = None if counts is None else max(int(np.max(counts)) if n else 0, 1)
        full = (n,) + (() if width is None else (width,)) + shape
        if self.per_chain is None:
            return fn(full, generator=self.shared, device=self.device, dtype=dtype)
        out = torch.zeros(full, device=self.device, dtype=dtype)
        for row, chain in enumerate(chains):
            generator = self.per_chain[int(chain)]
            if counts is None:
                out[row] = fn(shape, generator=generator, device=self.device, dtype=dtype)
            elif counts[row] > 0:
                out[row, : counts[row]] = fn((int(counts[row]),) + shape, generator=generator,
                                             device=self.device, dtype=dtype)
        return out

    def get_state(self) -> list[torch.Tensor]:
        """Generator states (for checkpoints)."""
        gens = [self.shared] if self.per_chain is None else self.per_chain
        return [g.get_state() if g is not None else torch.get_rng_state() for g in gens]

    def set_state(self, states: list[torch.Tensor]) -> None:
        """Restore :meth:`get_state`."""
        gens = [self.shared] if self.per_chain is None else self.per_chain
        if len(states) != len(gens):
            raise ValueError(f"checkpoint holds {len(states)} generator states, run has {len(gens)}")
        for g, state in zip(gens, states):
            if g is None:
                torch.set_rng_state(state)
            else:
                g.set_state(state)
