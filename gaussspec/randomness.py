"""Where the engine's random numbers come from.

* One ``torch.Generator`` for the whole batch (fast: one call draws for every chain).
* One generator per chain (a list): each chain's draws come from its own stream and depend only
  on that chain's own history, so a chain's output does not depend on which other chains share
  its batch, process or GPU (this is what makes multi-process runs rank-invariant).
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["Randomness", "chain_generators", "Pending", "BACKGROUND_MIN_VALUES"]

# A round's draws go to the background thread only from this many values on. Handing them over
# costs a thread wake-up (about 30 us on a 2-core VM) and the worker then competes with the target
# call for the interpreter lock; small draws take less than that. Measured on 2 shared cores,
# foreground against background (paired runs): one-chain ULA on posteriordb posteriors (about
# 200 values a round) -4..-9% wall-clock, 64 chains (6300 values) -2..-4%, a DDPM digits round of 16
# chains (9400) +0.6 +- 2.5%; a 3072-dimensional score network's round (123000 values) +1.2%, and
# a 2 ms latency-bound target with 73000 values a round +27%.
BACKGROUND_MIN_VALUES = 1 << 14

_REQUESTS: queue.SimpleQueue = queue.SimpleQueue()
_WORKER: threading.Thread | None = None
_WORKER_LOCK = threading.Lock()


def _serve() -> None:
    while True:
        work, answer = _REQUESTS.get()
        try:
            answer.put((True, work()))
        except BaseException as error:  # handed to the caller, raised there  # noqa: BLE001
            answer.put((False, error))


class Pending:
    """A result being computed by the background draw thread (or already known)."""

    __slots__ = ("_answer", "_value")

    def __init__(self, answer: queue.SimpleQueue | None = None, value=None):
        self._answer, self._value = answer, value

    @classmethod
    def start(cls, work: Callable[[], object]) -> "Pending":
        """Run ``work`` on the one background thread (started on first use)."""
        global _WORKER
        if _WORKER is None:  # checked again under the lock
            with _WORKER_LOCK:
                if _WORKER is None:
                    _WORKER = threading.Thread(target=_serve, name="gaussspec-draws", daemon=True)
                    _WORKER.start()
        answer: queue.SimpleQueue = queue.SimpleQueue()  # one per request: callers never mix
        _REQUESTS.put((work, answer))
        return cls(answer)

    def result(self):
        """Wait for the value; re-raise what the work raised."""
        if self._answer is not None:
            ok, value = self._answer.get()
            self._answer = None
            if not ok:
                raise value
            self._value = value
        return self._value


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
        self.on_cpu = torch.device(device).type == "cpu"
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

    def round_draws(
        self, chains: np.ndarray, lengths: np.ndarray, noise_shape, dtype, next_width: int,
        next_out: torch.Tensor | None = None,
    ) -> Pending:
        """The draws a round makes after its target call, started now (in the background when many).

        Returns a :class:`Pending` ``(uniforms, fresh, residual_uniforms, next_noise)``: acceptance
        uniforms ``(n, max(lengths))``, standard normal noise ``(n, *noise_shape)`` for the step
        after the accepted drafts, ``(n,)`` uniforms for the residual, and the NEXT round's draft
        noise ``(n, next_width, *noise_shape)`` for these chains (None when ``next_width`` is 0),
        written into ``next_out`` when given (a buffer the caller does not touch until then).
        None of them depends on the target's output, so on CPU, from
        :data:`BACKGROUND_MIN_VALUES` values on, they are drawn by a worker thread while the
        target call runs (torch releases the GIL inside its kernels). The generator is used in
        the same order as drawing them in the foreground after the call, so results are
        identical either way; the caller must not use the generator until the result is
        taken. Fewer values (the hand-over would cost more than the draws), without an explicit
        generator (torch's global one, which other code may touch) or off CPU (where draws are
        asynchronous already) they are drawn in the foreground.
        """

        n = len(chains)
        width = max(int(np.max(lengths)) if n else 0, 1)
        shape, device = tuple(noise_shape), self.device
        per_state = math.prod(shape)
        values = n * (width + 1 + (1 + next_width) * per_state)  # uniforms, fresh, next noise

        def draw_shared():  # three generator calls: the worker needs the GIL only briefly
            generator = self.shared
            both = torch.rand((n, width + 1), generator=generator, device=device,
                              dtype=torch.float64).cpu().numpy()
            fresh = torch.randn((n, *shape), generator=generator, device=device, dtype=dtype)
            next_noise = None
            if next_width > 0:
                next_noise = torch.randn((n, next_width, *shape), generator=generator,
                                         device=device, dtype=dtype, out=next_out)
            return (np.ascontiguousarray(both[:, :width]), fresh,
                    np.ascontiguousarray(both[:, width]), next_noise)

        def draw_per_chain():  # each chain draws only what its own round needs (rank invariance)
            uniforms = self.uniform(chains, lengths)
            fresh = self.normal(chains, None, noise_shape, dtype)
            residual_uniforms = self.uniform(chains, None)
            next_noise = None
            if next_width > 0:
                next_noise = self.normal(chains, np.full(n, next_width), noise_shape, dtype)
            return uniforms, fresh, residual_uniforms, next_noise

        draw = draw_shared if self.per_chain is None else draw_per_chain

        explicit = self.per_chain is not None or self.shared is not None
        if explicit and self.on_cpu and values >= BACKGROUND_MIN_VALUES:
            return Pending.start(draw)
        return Pending(value=draw())

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
