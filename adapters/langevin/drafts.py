"""Draft kernels for ULA that need no training.

Each draft is a :class:`gaussspec.GaussianKernel` with the target's own covariance object (so the
two share ``2 h M`` exactly) and a cheaper approximate gradient::

    x' ~ N(x + h M g_draft(x), 2 h M)

Use one with ``gs.KernelDrafter(draft)``. Speculative sampling is exact whatever the draft; a
better gradient only raises acceptance (ALGORITHMS sections 2 and 8).

* :class:`LaplaceDraftKernel`: the gradient of the Gaussian approximation at the mode, a linear
  function ``g(x) = g_0 + H (x - x_0)`` (``H`` the Hessian at the mode): one small matmul a step.
* :func:`low_precision_draft`: the same gradient computed in float32.
* :func:`subsample_draft`: the gradient of the log density with the likelihood over a fixed
  random subsample of the data rows, rescaled by ``N / n`` (regression-type posteriors).
"""

from __future__ import annotations

from typing import Callable

import attrs
import torch

import gaussspec as gs
from gaussspec.adapters.langevin.kernel import ULAKernel, autograd_gradient

__all__ = [
    "DraftULAKernel",
    "LaplaceApproximation",
    "LaplaceDraftKernel",
    "LowPrecisionDraftKernel",
    "find_mode",
    "laplace_draft",
    "low_precision_draft",
    "subsample_draft",
]

_F64 = torch.float64


def _check_target(target) -> ULAKernel:
    if not isinstance(target, ULAKernel):
        raise TypeError(f"a ULA draft needs the target ULAKernel, got {type(target).__name__}")
    return target


def _gradient_or_nan(log_density, x: torch.Tensor) -> torch.Tensor:
    """Row-wise autograd gradient; rows with a non-finite value come back NaN, a non-finite
    gradient as computed (:func:`autograd_gradient` with ``strict=False``)."""
    return autograd_gradient(log_density, x, strict=False)


class DraftULAKernel(gs.GaussianKernel):
    """A ULA draft: the target's step and covariance with another gradient.

    Args:
        target: The target :class:`ULAKernel` (its ``covariance`` object is reused as is).
        gradient: Cheap approximate gradient ``(B, d) -> (B, d)``. Rows where it is not finite
            fall back to the target's gradient (exactness never depends on the draft).
    """

    has_memory = False

    def __init__(self, target: ULAKernel, gradient: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.target = _check_target(target)
        if not callable(gradient):
            raise TypeError(f"gradient must be callable, got {type(gradient).__name__}")
        self._gradient = gradient
        self.num_steps = target.num_steps
        self.fallbacks = 0  # rows where the draft gradient failed and the target's was used

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.target.event_shape

    def covariance(self, t: torch.Tensor) -> gs.Covariance:
        return self.target.covariance(t)  # the very same object: Sigma shared exactly

    def draft_gradient(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """The approximate gradient, with the target's gradient where it is not finite."""
        grad = self._gradient(x)
        if not isinstance(grad, torch.Tensor) or grad.shape != x.shape:
            raise ValueError(f"draft gradient must return shape {tuple(x.shape)}")
        grad = grad.to(x.dtype)
        bad = ~torch.isfinite(grad).all(dim=1)
        if bad.any():
            self.fallbacks += int(bad.sum())
            grad = grad.clone()
            grad[bad] = self.target.gradient(x[bad], None if t is None else t[bad], strict=False)
        return grad

    def evaluate(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.draft_gradient(x, t)

    def mean_from(self, x, t, evaluation, memory=None):
        return self.target.mean_from(x, t, evaluation)  # x + h M g_draft

    def mean(self, x: torch.Tensor, t: torch.Tensor, memory=None) -> torch.Tensor:
        return self.mean_from(x, t, self.evaluate(x, t))


# --- Laplace ------------------------------------------------------------------------------------


@attrs.frozen
class LaplaceApproximation:
    """A Gaussian approximation at a point of the log density.

    Attributes:
        mode: ``(d,)`` the point (the mode when ``find_mode`` converged).
        gradient: ``(d,)`` gradient there (about 0 at the mode).
        hessian: ``(d, d)`` Hessian there (negative definite at a mode).
        iterations: Newton iterations used.
    """

    mode: torch.Tensor
    gradient: torch.Tensor
    hessian: torch.Tensor
    iterations: int


def _value_grad_hessian(log_density, x: torch.Tensor):
    def scalar(v):
        return log_density(v[None])[0]

    with torch.enable_grad():
        leaf = x.detach().clone().requires_grad_(True)
        value = scalar(leaf)
        (grad,) = torch.autograd.grad(value, leaf)
        hessian = torch.autograd.functional.hessian(scalar, x.detach().clone(), vectorize=True)
    return value.detach(), grad.detach(), 0.5 * (hessian + hessian.T).detach()


def find_mode(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    initial_point: torch.Tensor,
    max_iterations: int = 200,
    tolerance: float = 1e-9,
) -> LaplaceApproximation:
    """Maximise a log density by damped Newton steps; returns the Laplace approximation there.

    Args:
        log_density: ``(B, d) -> (B,)``.
        initial_point: ``(d,)`` start.
        max_iterations: Newton iterations at most.
        tolerance: Stop when the Newton decrement ``g^T (-H)^{-1} g`` is below it.

    Raises:
        ValueError: if the log density is not finite at the start, or the Hessian at the end is
            not negative definite (no mode found: a saddle or a flat direction).
    """
    x = torch.as_tensor(initial_point, dtype=_F64).reshape(-1).clone()
    value, grad, hessian = _value_grad_hessian(log_density, x)
    if not torch.isfinite(value):
        raise ValueError("find_mode: the log density is not finite at the initial point")
    iterations = 0
    eye = torch.eye(x.numel(), dtype=_F64)
    for iterations in range(1, max_iterations + 1):
        # Newton direction p = (-H + lambda I)^{-1} g, damped until -H + lambda I is PD
        neg = -hessian
        damping = 0.0
        scale = float(neg.diagonal().abs().max()) + 1e-12
        while True:
            factor, info = torch.linalg.cholesky_ex(neg + damping * eye)
            if int(info) == 0:
                break
            damping = max(2.0 * damping, 1e-8 * scale)
        direction = torch.cholesky_solve(grad[:, None], factor).squeeze(-1)
        decrement = float(grad @ direction)
        if decrement < tolerance:
            break
        step = 1.0
        while step > 1e-12:  # backtracking line search on the log density
            candidate = x + step * direction
            cand_value = log_density(candidate[None])[0].detach()
            if torch.isfinite(cand_value) and cand_value >= value + 1e-4 * step * decrement:
                break
            step *= 0.5
        else:
            break
        x = candidate
        value, grad, hessian = _value_grad_hessian(log_density, x)
    if int(torch.linalg.cholesky_ex(-hessian)[1]) != 0:
        raise ValueError(
            "find_mode: the Hessian at the end point is not negative definite (no isolated mode); "
            "a Laplace draft needs one"
        )
    return LaplaceApproximation(mode=x, gradient=grad, hessian=hessian, iterations=iterations)


class LaplaceDraftKernel(DraftULAKernel):
    """ULA on the Laplace (Gaussian) approximation: the gradient ``g_0 + H (x - x_0)``.

    The draft mean is the affine map ``x + h M (g_0 + H (x - x_0))``, one ``(B, d) x (d, d)``
    matmul per draft step.

    Args:
        target: The target :class:`ULAKernel`.
        approximation: A :class:`LaplaceApproximation` (from :func:`find_mode`).
    """

    def __init__(self, target: ULAKernel, approximation: LaplaceApproximation) -> None:
        super().__init__(target, self._linear_gradient)
        self.approximation = approximation
        d = target.dimension
        hessian = approximation.hessian.to(_F64)
        if hessian.shape != (d, d):
            raise ValueError(f"Laplace hessian must have shape ({d}, {d}), got {tuple(hessian.shape)}")
        # mean = x + h M (g_0 + H (x - x_0)) = x (I + h M H)^T + h M (g_0 - H x_0)
        h = target.step_size
        precond_hessian = target.apply_preconditioner(hessian.T).T  # M H (columns preconditioned)
        identity = torch.eye(d, dtype=_F64, device=hessian.device)
        transition = (identity + h * precond_hessian).T.contiguous()  # (I + h M H)^T, row vectors
        offset = approximation.gradient - hessian @ approximation.mode
        offset = h * target.apply_preconditioner(offset[None])[0]  # h M (g_0 - H x_0)
        self._affine = {(_F64, hessian.device): (transition, offset)}  # by (dtype, device)

    def _linear_gradient(self, x: torch.Tensor) -> torch.Tensor:
        a = self.approximation
        return a.gradient.to(x.dtype) + (x - a.mode.to(x.dtype)) @ a.hessian.to(x.dtype)

    def mean(self, x: torch.Tensor, t: torch.Tensor, memory=None) -> torch.Tensor:
        key = (x.dtype, x.device)
        affine = self._affine.get(key)
        if affine is None:  # the float64 map in x's dtype and on its device, made once
            transition, offset = next(iter(self._affine.values()))
            affine = self._affine[key] = (transition.to(x.device, x.dtype),
                                          offset.to(x.device, x.dtype))
        transition, offset = affine
        return torch.addmm(offset, x, transition)  # x (I + h M H)^T + h M (g_0 - H x_0): one call


def laplace_draft(
    target: ULAKernel,
    initial_point: torch.Tensor | None = None,
    log_density: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LaplaceDraftKernel:
    """A Laplace draft for ``target``: finds the mode of its log density and linearises there.

    Args:
        target: The target :class:`ULAKernel` (it must have a log density, or pass one).
        initial_point: Start of the mode search; default the target's ``initial_point`` or the
            posterior's.
        log_density: The log density to approximate; default the target's.
    """
    target = _check_target(target)
    log_density = log_density or target.log_density
    if log_density is None:
        raise ValueError("laplace_draft needs a log density (the target only has a gradient)")
    if initial_point is None:
        initial_point = target.initial_point
    if initial_point is None and hasattr(log_density, "initial_point"):
        initial_point = log_density.initial_point()
    if initial_point is None:
        raise ValueError("laplace_draft needs an initial_point for the mode search")
    return LaplaceDraftKernel(target, find_mode(log_density, initial_point))


# --- low precision and data subsampling ------------------------------------------------------------


class LowPrecisionDraftKernel(DraftULAKernel):
    """The target's gradient computed in float32 (for a float64 target), cast back.

    Args:
        target: The target :class:`ULAKernel`.
        log_density_low: The log density computing in float32 (takes and returns float32).
        dtype: The low precision, default ``torch.float32``.
    """

    def __init__(
        self,
        target: ULAKernel,
        log_density_low: Callable[[torch.Tensor], torch.Tensor],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.dtype = dtype
        self._low = log_density_low
        super().__init__(target, self._low_gradient)

    def _low_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return _gradient_or_nan(self._low, x.to(self.dtype)).to(x.dtype)


def low_precision_draft(
    target: ULAKernel,
    log_density_low: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
) -> LowPrecisionDraftKernel:
    """A float32 draft of a float64 ULA target.

    Args:
        target: The target :class:`ULAKernel`.
        log_density_low: A log density computing in ``dtype``. Default: a built-in posterior's
            ``log_density_as(dtype)``, or else the target's own log density fed ``dtype`` inputs
            (which works when it computes in the dtype of its input).
        dtype: The low precision.
    """
    target = _check_target(target)
    if log_density_low is None:
        base = target.log_density
        if base is None:
            raise ValueError("low_precision_draft needs a log density (the target only has a gradient)")
        as_dtype = getattr(base, "log_density_as", None)
        log_density_low = as_dtype(dtype) if callable(as_dtype) else base
    return LowPrecisionDraftKernel(target, log_density_low, dtype)


def subsample_draft(
    target: ULAKernel,
    size: int,
    generator: torch.Generator | None = None,
    posterior=None,
) -> DraftULAKernel:
    """A draft whose gradient uses a fixed random subsample of ``size`` data rows, rescaled.

    Args:
        target: The target :class:`ULAKernel` built on a built-in posterior.
        size: Number of data rows kept.
        generator: Randomness for choosing the rows (fixed for the whole run).
        posterior: The :class:`~gaussspec.adapters.langevin.Posterior`; default the target's.

    Raises:
        ValueError: if the posterior has no exchangeable data rows (see ``Posterior.data_size``).
    """
    target = _check_target(target)
    posterior = posterior if posterior is not None else target.log_density
    if not hasattr(posterior, "subsampled_log_density"):
        raise ValueError("subsample_draft needs a built-in Posterior (posterior=...)")
    log_density = posterior.subsampled_log_density(size, generator)
    return DraftULAKernel(target, lambda x: _gradient_or_nan(log_density, x))
