"""Planted mutants: deliberately broken engines that an exactness test must reject.

A statistical test that passes the real engine proves little until it also FAILS a broken one.
Use :func:`planted_mutant` around a speculative run::

    with planted_mutant("always_accept"):
        broken = sampler.sample(x0, generator=g)
    assert path_law_test(broken_paths, law).rejects(alpha)
"""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import torch

from gaussspec import sampler as _sampler
from gaussspec.compiled import (RESIDUAL_DRAW, TARGET_DRAW, fused_next_states, fused_verify,
                                gather_rows)
from gaussspec.covariance import IsotropicCovariance

__all__ = ["MUTANTS", "planted_mutant"]

MUTANTS = (
    "always_accept",
    "draft_instead_of_residual",
    "reflection_in_block",
    "off_by_one_step",
    "covariance_5_percent",
)


def _always_accept(log_ratio, delta, uniforms, lengths, verification):
    return np.asarray(lengths, dtype=np.int64).copy(), np.zeros(len(lengths))


def _fused_always_accept(target, path, noise, fresh, lengths, std, uniforms, residual_uniforms,
                         token, reflection, out, gather=None):
    """The same bug on the compiled CPU path: every draft accepted, the bonus step after it."""
    found = fused_verify(target, path, noise, lengths, std, uniforms, residual_uniforms, token,
                         reflection)
    found.tau = np.asarray(lengths, dtype=np.int64).copy()
    found.log_weight = np.zeros(len(lengths))
    found.mode = np.full(len(lengths), TARGET_DRAW)
    if found.status != 0:
        return found, False
    return found, _next_states_and_gather(target, path, noise, fresh, found.tau, found.mode,
                                          found.shift, std, out, gather)


def _next_states_and_gather(target, path, noise, fresh, tau, mode, shift, std, out, gather):
    """The rest of :func:`fused_step` after verification (the next states, then the gather)."""
    finite = fused_next_states(target, path, noise, fresh, tau, mode, shift, std, out)
    if gather is not None:
        source, flat_index, gathered = gather
        gather_rows(source, flat_index, tau, gathered)
    return finite


def _draft_instead_of_residual(whitened, delta, log_weight, uniforms, fresh_noise):
    return fresh_noise  # y = m_p + L zeta: a fresh DRAFT draw, not the residual


def _fused_draft_instead_of_residual(target, path, noise, fresh, lengths, std, uniforms,
                                     residual_uniforms, token, reflection, out, gather=None):
    """The same bug on the compiled CPU path: residual rows become ``m_p + std zeta``."""
    found = fused_verify(target, path, noise, lengths, std, uniforms, residual_uniforms, token,
                         reflection)
    if found.status != 0:
        return found, False
    tau, mode = found.tau, found.mode
    target = target.copy()
    for row in np.nonzero(mode == RESIDUAL_DRAW)[0]:  # a target draw centred on m_p = x' - std xi
        k = tau[row]
        target[row, k] = path[row, k + 1] - std[row, k] * noise[row, k]
    mode = np.where(mode == RESIDUAL_DRAW, TARGET_DRAW, mode)
    return found, _next_states_and_gather(target, path, noise, fresh, tau, mode, found.shift, std,
                                          out, gather)


class _ScaledCovariance:
    def __init__(self, inner, factor):
        self.inner, self.factor = inner, factor

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def apply(self, noise, event_shape):
        return self.factor * self.inner.apply(noise, event_shape)

    def step(self, mean, noise, event_shape):
        return mean + self.apply(noise, event_shape).to(mean.dtype)


def _scaled(covariance, factor):
    """``factor L``: a real isotropic covariance where possible (the compiled CPU path sees it)."""
    if isinstance(covariance, IsotropicCovariance):
        return IsotropicCovariance(covariance.std * factor)
    return _ScaledCovariance(covariance, factor)


@contextlib.contextmanager
def planted_mutant(name: str):
    """Run the engine with one planted bug while the context is open.

    Args:
        name: One of :data:`MUTANTS`.
    """
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant {name!r}; valid: {', '.join(MUTANTS)}")
    with contextlib.ExitStack() as stack:
        if name == "always_accept":
            stack.enter_context(mock.patch.object(_sampler, "accepted_lengths", _always_accept))
            stack.enter_context(mock.patch.object(_sampler, "fused_step", _fused_always_accept))
        elif name == "draft_instead_of_residual":
            stack.enter_context(
                mock.patch.object(_sampler, "residual_noise", _draft_instead_of_residual)
            )
            stack.enter_context(mock.patch.object(
                _sampler, "fused_step", _fused_draft_instead_of_residual))
        elif name == "reflection_in_block":
            original = _sampler._Run.__init__

            def init(self, *args):
                original(self, *args)
                self.coupling = "reflection"

            stack.enter_context(mock.patch.object(_sampler._Run, "__init__", init))
        elif name == "off_by_one_step":
            original_eval = _sampler._Run._target_evaluate

            def shifted(self, x, t):
                return original_eval(self, x, torch.clamp(t + 1, max=self.num_steps - 1))

            stack.enter_context(mock.patch.object(_sampler._Run, "_target_evaluate", shifted))
        elif name == "covariance_5_percent":
            original_init = _sampler._Run.__init__

            def init_scaled(self, *args):
                original_init(self, *args)
                target = self.target
                inner = target.covariance

                class Wrapped(type(target)):
                    pass

                wrapped = object.__new__(Wrapped)
                wrapped.__dict__.update(target.__dict__)
                wrapped.covariance = lambda t: _scaled(inner(t), 1.05)
                self.target = wrapped

            stack.enter_context(mock.patch.object(_sampler._Run, "__init__", init_scaled))
        yield
