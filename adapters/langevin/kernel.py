"""The unadjusted Langevin (ULA) kernel and its gradient plumbing.

ULA with step size h and a constant symmetric positive-definite preconditioner M::

    x' ~ N(x + h M grad log pi(x), 2 h M)

is a Gaussian kernel with a state-independent covariance. The expensive part is the gradient, so
``evaluate(x, t)`` returns ``grad log pi(x)`` and ``mean_from(x, t, g) = x + h M g``: the core's
frozen and free drafters can reuse an old gradient, and draft kernels (``drafts.py``) that
replace the gradient by a cheap approximation share this kernel's covariance object.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

import gaussspec as gs

__all__ = ["ULAKernel", "autograd_gradient"]

_F64 = torch.float64


def _describe_steps(t: torch.Tensor | None, bad: torch.Tensor) -> str:
    """Human-readable list of the steps (and batch rows) where ``bad`` is True."""
    rows = torch.nonzero(bad).flatten()
    shown = rows[:5].tolist()
    if t is None:
        where = f"batch rows {shown}"
    else:
        steps = t.reshape(-1)[rows[:5]].tolist() if t.numel() == bad.numel() else []
        where = f"steps t={steps} (batch rows {shown})"
    more = f" and {rows.numel() - len(shown)} more" if rows.numel() > len(shown) else ""
    return where + more


def autograd_gradient(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor | None = None,
    strict: bool = True,
) -> torch.Tensor:
    """``grad log pi`` at each row of ``x`` by one batched reverse-mode pass.

    The log density must treat rows independently (row ``i`` of the output depends on row ``i``
    of the input only), which makes the gradient of the sum the row-wise gradients.

    Args:
        log_density: Maps ``(B, d)`` to ``(B,)``.
        x: ``(B, d)`` states (chains, or all states of a verification block).
        t: Optional ``(B,)`` step indices, used only to name the steps in error messages.
        strict: Raise on a non-finite log density or gradient. With ``strict=False`` those rows
            come back not finite (NaN where the log density is not) and the others as usual: a
            verification block holds drafted states that no chain may ever reach (a draft that
            ran off far from the target's mass), and the sampler rejects the drafts that depend
            on such a row, raising ``NonFiniteMeanError`` only if a chain would step from it.

    Returns:
        ``(B, d)`` gradients, detached.

    Raises:
        ValueError: if the log density has the wrong shape; with ``strict``, also if it holds
            NaN (any step) or +inf, or the gradient is not finite. A log density of -inf (a state
            outside the support) is reported too: ULA has no gradient there.
    """
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        value = log_density(leaf)
        if not isinstance(value, torch.Tensor) or value.shape != (x.shape[0],):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"log_density must map a (B, d) = {tuple(x.shape)} tensor to shape (B,) = "
                f"({x.shape[0]},), got {shape}"
            )
        total = value.sum()
        finite = None  # every row finite, unless a row-wise check says otherwise
        if not bool(torch.isfinite(total)):  # one reduction: NaN or inf poisons the sum
            finite = torch.isfinite(value)
            if bool(finite.all()):  # finite rows whose sum overflowed
                finite = None
            elif strict:
                kind = "NaN" if torch.isnan(value).any() else "inf"
                raise ValueError(
                    f"log_density returned {kind} at {_describe_steps(t, ~finite)}; ULA needs a "
                    "finite log density (and gradient) at every state it visits"
                )
            else:  # the finite rows' gradients (rows are independent)
                total = torch.where(finite, value, 0.0).sum()
        (grad,) = torch.autograd.grad(total, leaf)
    if not strict:  # rows whose log density is not finite come back NaN, the others as computed
        return (grad if finite is None else grad.masked_fill(~finite[:, None], float("nan"))).detach()
    bad = ~torch.isfinite(grad).all(dim=1)
    if bad.any():
        raise ValueError(f"the gradient of log_density is NaN or inf at {_describe_steps(t, bad)}")
    return grad.detach()


def _check_gradient(grad, x: torch.Tensor, t: torch.Tensor | None, strict: bool) -> torch.Tensor:
    """The user's gradient: its shape, and with ``strict`` its finiteness (as
    :func:`autograd_gradient`)."""
    if not isinstance(grad, torch.Tensor) or grad.shape != x.shape:
        shape = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise ValueError(f"gradient must map a {tuple(x.shape)} tensor to the same shape, got {shape}")
    if strict:
        bad = ~torch.isfinite(grad).all(dim=1)
        if bad.any():
            raise ValueError(f"gradient returned NaN or inf at {_describe_steps(t, bad)}")
    return grad


def _validate_step_size(step_size) -> float:
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
        raise TypeError(f"step_size must be a positive float, got {type(step_size).__name__}")
    if not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a positive finite float, got {step_size}")
    return float(step_size)


def _validate_num_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    return num_steps


def _validate_preconditioner(preconditioner, dimension: int | None):
    """Returns ``(M, kind, factor)``: kind 'diagonal' (M a (d,) vector) or 'dense' (M (d, d))."""
    if not isinstance(preconditioner, torch.Tensor):
        raise TypeError(
            "preconditioner must be a torch.Tensor: a (d,) positive diagonal or a (d, d) symmetric "
            f"positive-definite matrix, got {type(preconditioner).__name__}"
        )
    m = preconditioner.detach().to(_F64)
    if not torch.isfinite(m).all():
        raise ValueError("preconditioner must be finite; it holds NaN or inf")
    if m.ndim == 1:
        if (m <= 0).any():
            raise ValueError(
                "a diagonal preconditioner must be positive (it is a covariance); got a value <= 0 "
                f"at coordinates {torch.nonzero(m <= 0).flatten()[:5].tolist()}"
            )
        kind, factor = "diagonal", torch.sqrt(m)
    elif m.ndim == 2 and m.shape[0] == m.shape[1]:
        if not torch.allclose(m, m.T, rtol=1e-10, atol=1e-12 * float(m.abs().max())):
            raise ValueError("a dense preconditioner must be symmetric; got an asymmetric matrix")
        m = 0.5 * (m + m.T)
        factor, info = torch.linalg.cholesky_ex(m)
        if int(info) != 0:
            smallest = float(torch.linalg.eigvalsh(m)[0])
            raise ValueError(
                "a dense preconditioner must be positive definite; its Cholesky factorisation "
                f"failed (smallest eigenvalue {smallest:.3g})"
            )
        kind = "dense"
    else:
        raise ValueError(
            "preconditioner must have shape (d,) (diagonal) or (d, d) (dense), got shape "
            f"{tuple(m.shape)}"
        )
    if dimension is not None and m.shape[0] != dimension:
        raise ValueError(
            f"preconditioner is for dimension {m.shape[0]} but the target has dimension {dimension}"
        )
    return m, kind, factor


class ULAKernel(gs.GaussianKernel):
    """Unadjusted Langevin kernel ``x' ~ N(x + h M grad log pi(x), 2 h M)``.

    Args:
        log_density: A callable mapping a ``(B, d)`` tensor to ``(B,)`` log densities (rows
            independent), e.g. a :class:`~gaussspec.adapters.langevin.Posterior`; differentiated
            by autograd in one batched pass over all chains (and over a verification block). May
            be None when ``gradient`` is given.
        step_size: ``h > 0``.
        num_steps: Number of transitions K.
        preconditioner: Optional constant M: a ``(d,)`` positive diagonal (the covariance is then
            a ``DiagonalCovariance``) or a ``(d, d)`` symmetric positive-definite matrix (a
            ``DenseCovariance`` through its Cholesky factor). None means M = I.
        gradient: Optional user gradient ``(B, d) -> (B, d)`` used instead of autograd.
        dimension: ``d``; inferred from a Posterior, the preconditioner or ``initial_point``, and
            otherwise from the first state the kernel sees.
        initial_point: Optional ``(d,)`` default start for :meth:`initial_state`.

    Raises:
        ValueError: for a non-positive step size, a non-PD / badly shaped preconditioner, or no
            log density nor gradient.
    """

    has_memory = False

    def __init__(
        self,
        log_density: Callable[[torch.Tensor], torch.Tensor] | None,
        step_size: float,
        num_steps: int,
        *,
        preconditioner: torch.Tensor | None = None,
        gradient: Callable[[torch.Tensor], torch.Tensor] | None = None,
        dimension: int | None = None,
        initial_point: torch.Tensor | None = None,
    ) -> None:
        if log_density is None and gradient is None:
            raise ValueError("ULAKernel needs a log_density or a gradient function (both are None)")
        for name, fn in (("log_density", log_density), ("gradient", gradient)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        self.log_density = log_density
        self.gradient_fn = gradient
        self.step_size = _validate_step_size(step_size)
        self.num_steps = _validate_num_steps(num_steps)
        dimension = self._infer_dimension(log_density, dimension, initial_point)
        sqrt_2h = math.sqrt(2.0 * self.step_size)
        if preconditioner is None:
            self.preconditioner, self.preconditioner_kind = None, "identity"
            # Sigma = 2 h I: L = sqrt(2 h) I
            self._covariance = gs.IsotropicCovariance(sqrt_2h)
        else:
            m, kind, factor = _validate_preconditioner(preconditioner, dimension)
            dimension = m.shape[0] if dimension is None else dimension
            self.preconditioner, self.preconditioner_kind = m, kind
            if kind == "diagonal":
                self._covariance = gs.DiagonalCovariance(sqrt_2h * factor)  # L = sqrt(2 h M)
            else:
                self._covariance = gs.DenseCovariance(sqrt_2h * factor)  # L = sqrt(2h) chol(M)
        self._dimension = dimension
        if initial_point is not None:
            initial_point = torch.as_tensor(initial_point, dtype=_F64).reshape(-1)
        self.initial_point = initial_point

    # --- shape ----------------------------------------------------------------------------------

    @staticmethod
    def _infer_dimension(log_density, dimension, initial_point):
        if dimension is not None:
            if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
                raise ValueError(f"dimension must be a positive int, got {dimension!r}")
            return dimension
        own = getattr(log_density, "dimension", None)
        if isinstance(own, int):
            return own
        if initial_point is not None:
            return int(torch.as_tensor(initial_point).numel())
        return None

    @property
    def dimension(self) -> int:
        """The state dimension ``d``."""
        if self._dimension is None:
            raise ValueError(
                "ULAKernel does not know the state dimension yet: pass dimension=d (or a "
                "preconditioner / initial_point), or call it on a (B, d) state first"
            )
        return self._dimension

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.dimension,)

    def _see(self, x: torch.Tensor) -> None:
        if x.ndim != 2:
            raise ValueError(f"ULAKernel states must have shape (B, d), got {tuple(x.shape)}")
        if self._dimension is None:
            self._dimension = int(x.shape[1])
        elif x.shape[1] != self._dimension:
            raise ValueError(
                f"ULAKernel states must have shape (B, {self._dimension}), got {tuple(x.shape)}"
            )

    # --- the Gaussian kernel ------------------------------------------------------------------

    def covariance(self, t: torch.Tensor) -> gs.Covariance:
        """``2 h M`` as a noise factor (the same object at every step, shared with the drafts)."""
        return self._covariance

    def gradient(self, x: torch.Tensor, t: torch.Tensor | None = None,
                 strict: bool = True) -> torch.Tensor:
        """``grad log pi(x)`` for ``(B, d)`` states (autograd or the user's gradient).

        Raises ``ValueError`` where the log density or the gradient is not finite, naming the
        steps; with ``strict=False`` those rows come back not finite instead: NaN from autograd
        (:func:`autograd_gradient`), as returned from a user's gradient.
        """
        self._see(x)
        if self.gradient_fn is not None:
            return _check_gradient(self.gradient_fn(x), x, t, strict)
        return autograd_gradient(self.log_density, x, t, strict)

    def evaluate(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The expensive part of the mean: the gradient of the log density at ``x``.

        Rows where the log density or its gradient is not finite come back not finite rather
        than raising: a verification block holds drafted states that no chain may reach, and the
        sampler rejects the drafts that depend on them; a chain that would step from such a
        state (a plain step, or an accepted draft) raises ``gaussspec.NonFiniteMeanError``
        naming the step and the chain.
        """
        return self.gradient(x, t, strict=False)

    def apply_preconditioner(self, g: torch.Tensor) -> torch.Tensor:
        """``M g`` for ``(B, d)`` vectors."""
        if self.preconditioner is None:
            return g
        m = self.preconditioner.to(g.dtype)
        if self.preconditioner_kind == "diagonal":
            return m * g
        return g @ m  # (M g^T)^T with M symmetric

    def mean_from(self, x: torch.Tensor, t: torch.Tensor, evaluation: torch.Tensor, memory=None):
        """``x + h M g`` with ``g`` a gradient (possibly taken at another state)."""
        return x + self.step_size * self.apply_preconditioner(evaluation)  # ULA mean x + h M grad

    def mean(self, x: torch.Tensor, t: torch.Tensor, memory=None) -> torch.Tensor:
        return self.mean_from(x, t, self.evaluate(x, t))

    def initial_state(self, num_chains: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num_chains, d)`` starting states: the posterior's draws, or ``initial_point`` repeated."""
        own = getattr(self.log_density, "initial_state", None)
        if callable(own):
            return own(num_chains, generator)
        if self.initial_point is None:
            raise ValueError(
                "ULAKernel has no initial_point: pass initial_point=... or give x0 to the sampler"
            )
        return self.initial_point.expand(num_chains, -1).clone()

    def __repr__(self) -> str:
        name = getattr(self.log_density, "name", None) or type(self.log_density).__name__
        return (
            f"ULAKernel({name}, step_size={self.step_size}, num_steps={self.num_steps}, "
            f"preconditioner={self.preconditioner_kind})"
        )
