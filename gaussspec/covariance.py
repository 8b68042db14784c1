"""Covariances shared by a target kernel and its draft.

Every covariance is a noise factor ``L`` (``Sigma = L L^T``) batched over chains. It knows how to

* draw standard noise ``xi`` of its noise shape and map it to state space, ``L xi``;
* whiten a mean gap, ``Delta = L^+ gap`` (ALGORITHMS section 2 and 6);
* tell whether a gap lies outside the range of ``L`` (then draft and target are mutually
  singular and the residual is the target itself, ALGORITHMS section 6).

Whitening and the range test run in float64 whatever the factor's dtype. A gap counts as inside the
range when its component orthogonal to the range is below ``range_rtol`` times the size of the
means it came from: rounding of the means themselves, not a real disagreement.
"""

from __future__ import annotations

import abc
import math

import attrs
import torch

__all__ = [
    "Covariance",
    "IsotropicCovariance",
    "DiagonalCovariance",
    "DenseCovariance",
    "FactorCovariance",
]

_F64 = torch.float64


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=_F64)
    raise TypeError(f"{name} must be a torch.Tensor or a float, got {type(value).__name__}")


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite; it holds NaN or inf")


def _batch_norm(tensor: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over all dims but the first."""
    return tensor.reshape(tensor.shape[0], -1).norm(dim=1)


class Covariance(abc.ABC):
    """A batched noise factor ``L`` with ``Sigma = L L^T``."""

    @abc.abstractmethod
    def noise_shape(self, event_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one chain's standard noise ``xi`` for states of ``event_shape``."""

    @abc.abstractmethod
    def apply(self, noise: torch.Tensor, event_shape: tuple[int, ...]) -> torch.Tensor:
        """``L xi`` for ``noise`` of shape ``(B, *noise_shape)``, returned as ``(B, *event_shape)``."""

    @abc.abstractmethod
    def _whiten(self, gap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L^+ gap, L L^+ gap)`` in float64 for a float64 gap ``(B, *event)``."""

    def whiten(
        self, gap: torch.Tensor, scale: torch.Tensor, range_rtol: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map a mean gap to noise space and test that it lies in the range of ``L``.

        Args:
            gap: ``m_q - m_p``, shape ``(B, *event)``.
            scale: ``(B,)`` size of the means the gap came from (rounding reference).
            range_rtol: Relative tolerance for the component outside the range.

        Returns:
            ``(delta_vector, in_range)``: ``L^+ gap`` of shape ``(B, *noise)`` in float64, and a
            ``(B,)`` bool tensor, False where draft and target are mutually singular.
        """
        gap = gap.to(_F64)
        whitened, projected = self._whiten(gap)
        if self.full_range():  # every gap is in the range of an invertible factor
            return whitened, torch.ones(gap.shape[0], dtype=torch.bool, device=gap.device)
        outside = _batch_norm(gap - projected)  # ALGORITHMS section 6: the gap off range(L)
        in_range = outside <= range_rtol * scale.to(_F64) + torch.finfo(_F64).tiny
        return whitened, in_range

    def full_range(self) -> bool:
        """True when ``L`` is invertible (no range test needed)."""
        return False

    #: Whitening is coordinate-wise (isotropic, diagonal): exact in the states' own precision.
    elementwise = False

    def row_matrices(self) -> bool:
        """Whether ``L`` holds a matrix per row (a ``(B, d, n)`` factor).

        False for an element-wise ``L`` and for one factor shared by every row: a covariance for
        many rows is then cheap to build, and ``apply`` over all of them is one call (the sampler
        draws a round's draft noise so). Classes that do not say are taken to hold them.
        """
        return not self.elementwise

    def shared_inverse(self, event_shape: tuple[int, ...], dtype: torch.dtype) -> bool:
        """Whether ``L`` is one invertible matrix for every row that :meth:`inverse_apply`
        applies exactly enough to states of ``dtype``.

        The sampler's compiled CPU path then runs a round in the whitened coordinates
        ``z = L^-1 x`` (where the noise is isotropic with std 1) and maps the next states back
        with :meth:`apply`. False unless a class says otherwise.
        """
        return False

    def inverse_apply(self, states: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = L^-1 x`` for every row of ``states`` ``(..., *event)``, in their dtype; only
        where :meth:`shared_inverse` holds."""
        raise NotImplementedError(f"{type(self).__name__} has no shared inverse")

    @classmethod
    def _unchecked(cls, **values):
        """An instance with these field values, its validators and converters skipped (the
        ``trusted`` constructors); ``__attrs_post_init__`` still runs."""
        covariance = object.__new__(cls)
        for name, value in values.items():
            object.__setattr__(covariance, name, value)
        if hasattr(covariance, "__attrs_post_init__"):
            covariance.__attrs_post_init__()
        return covariance

    def step(self, mean: torch.Tensor, noise: torch.Tensor, event_shape) -> torch.Tensor:
        """``mean + L xi`` in the dtype of ``mean``."""
        return mean + self.apply(noise, event_shape).to(mean.dtype)

    def draw(
        self,
        batch: int,
        event_shape: tuple[int, ...],
        generator: torch.Generator | None,
        device: torch.device,
        dtype: torch.dtype = _F64,
    ) -> torch.Tensor:
        """Standard normal noise ``xi`` of shape ``(batch, *noise_shape)``.

        Drafts and plain chains draw noise in the states' dtype; verification converts it to
        float64 (the log ratio of ALGORITHMS section 2 is evaluated at the noise actually used).
        """
        shape = (batch, *self.noise_shape(event_shape))
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def _per_chain(std: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a scalar or ``(B,)`` std so that it broadcasts against ``(B, *event)``."""
    if std.ndim == 0:
        return std
    return std.reshape(std.shape[0], *([1] * (ndim - 1)))


@attrs.frozen
class IsotropicCovariance(Covariance):
    """``L = std * I``; ``std`` is a scalar or one value per chain, zeros allowed.

    Args:
        std: Non-negative standard deviation, a float, a 0-d tensor or a ``(B,)`` tensor.
    """

    std: torch.Tensor = attrs.field()
    _scalar: float | None = attrs.field(init=False, repr=False, eq=False)
    elementwise = True

    @std.validator
    def _check(self, attribute, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value) or value < 0:  # cheap path for the common scalar
                raise ValueError(
                    f"IsotropicCovariance std must be finite and >= 0 (zeros allowed), got {value}"
                )
            return
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"std must be a torch.Tensor or a float, got {type(value).__name__}")
        if value.ndim > 1:
            raise ValueError(
                f"IsotropicCovariance std must be a scalar or a (B,) tensor, got shape "
                f"{tuple(value.shape)}; use DiagonalCovariance for a per-coordinate std"
            )
        _check_finite(value, "IsotropicCovariance std")
        if (value < 0).any():
            raise ValueError("IsotropicCovariance std must be >= 0 (zeros allowed), got a negative value")

    def __attrs_post_init__(self):
        scalar = None
        if isinstance(self.std, (int, float)):
            scalar = float(self.std)
            object.__setattr__(self, "std", torch.tensor(scalar, dtype=_F64))
        elif self.std.ndim == 0:
            scalar = float(self.std)
        object.__setattr__(self, "_scalar", scalar)

    @classmethod
    def trusted(cls, std: torch.Tensor) -> IsotropicCovariance:
        """``IsotropicCovariance(std)`` without the value checks (finite, non-negative).

        The checks read the values on the host, which on a GPU waits for the device. A kernel
        whose per-step ``std`` is picked from a table it checked once (at its construction)
        builds its covariances with this on the hot path.

        Args:
            std: A 0-d or ``(B,)`` tensor of finite, non-negative values (not checked).

        Raises:
            TypeError: ``std`` is not a tensor.
            ValueError: ``std`` has more than one dimension (a shape check: no host read).
        """
        if not isinstance(std, torch.Tensor):
            raise TypeError(f"IsotropicCovariance.trusted takes a tensor, got {type(std).__name__}")
        if std.ndim > 1:
            raise ValueError(
                f"IsotropicCovariance.trusted takes a 0-d or (B,) tensor, got shape {tuple(std.shape)}")
        return cls._unchecked(std=std)

    def noise_shape(self, event_shape):
        return tuple(event_shape)

    def full_range(self):
        if self._scalar is not None:
            return self._scalar > 0
        return bool((self.std > 0).all())

    def apply(self, noise, event_shape):
        if self._scalar is not None:
            return self._scalar * noise  # L xi
        return _per_chain(self.std.to(noise.device, noise.dtype), noise.ndim) * noise  # L xi

    def step(self, mean, noise, event_shape):
        if self._scalar is not None:
            return torch.add(mean, noise.to(mean.dtype), alpha=self._scalar)  # m + std xi
        return mean + self.apply(noise, event_shape).to(mean.dtype)

    def _whiten(self, gap):
        if self._scalar is not None and self._scalar > 0:  # fast path: L = std I, invertible
            return gap / self._scalar, gap
        std = _per_chain(self.std.to(gap.device, gap.dtype), gap.ndim).expand_as(gap)
        positive = std > 0
        safe = torch.where(positive, std, torch.ones_like(std))
        whitened = torch.where(positive, gap / safe, torch.zeros_like(gap))  # Delta = L^+ gap
        projected = torch.where(positive, gap, torch.zeros_like(gap))  # L L^+ gap
        return whitened, projected


@attrs.frozen
class DiagonalCovariance(Covariance):
    """``L = diag(std)``; ``std`` broadcasts against ``(B, *event)``, zeros allowed.

    Args:
        std: Non-negative per-coordinate standard deviations, shape ``(*event)`` or
            ``(B, *event)`` (or anything that broadcasts against ``(B, *event)``).
    """

    std: torch.Tensor = attrs.field(converter=lambda v: _as_tensor(v, "std"))
    elementwise = True

    @std.validator
    def _check(self, attribute, value):
        _check_finite(value, "DiagonalCovariance std")
        if (value < 0).any():
            raise ValueError("DiagonalCovariance std must be >= 0 (zeros allowed), got a negative value")

    @classmethod
    def trusted(cls, std: torch.Tensor) -> DiagonalCovariance:
        """``DiagonalCovariance(std)`` without the value checks (finite, non-negative); see
        :meth:`IsotropicCovariance.trusted`.

        Args:
            std: A tensor of finite, non-negative values (not checked).

        Raises:
            TypeError: ``std`` is not a tensor.
        """
        if not isinstance(std, torch.Tensor):
            raise TypeError(f"DiagonalCovariance.trusted takes a tensor, got {type(std).__name__}")
        return cls._unchecked(std=std)

    def noise_shape(self, event_shape):
        return tuple(event_shape)

    def full_range(self):
        return bool((self.std > 0).all())

    def shared_inverse(self, event_shape, dtype):
        # no row dimension (one L for every row), and invertible; element-wise: exact in any dtype
        return self.std.dim() <= len(event_shape) and self.full_range()

    def inverse_apply(self, states, out):
        return torch.div(states, self.std.to(states.device, states.dtype), out=out)  # x / s

    def apply(self, noise, event_shape):
        return self.std.to(noise.device, noise.dtype) * noise  # L xi

    def _whiten(self, gap):
        std = self.std.to(gap.device, gap.dtype).expand_as(gap)
        positive = std > 0
        safe = torch.where(positive, std, torch.ones_like(std))
        whitened = torch.where(positive, gap / safe, torch.zeros_like(gap))  # Delta = L^+ gap
        projected = torch.where(positive, gap, torch.zeros_like(gap))  # L L^+ gap
        return whitened, projected


def _check_rows(matrix: torch.Tensor, event_shape, name: str) -> None:
    if matrix.shape[-2] != math.prod(event_shape):
        raise ValueError(
            f"{name} has {matrix.shape[-2]} rows but states of shape {tuple(event_shape)} have "
            f"{math.prod(event_shape)} coordinates"
        )


def _check_matrix(value: torch.Tensor, name: str) -> None:
    if value.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (d, n) or (B, d, n), got shape {tuple(value.shape)}"
        )
    _check_finite(value, name)


@attrs.frozen
class DenseCovariance(Covariance):
    """``L`` a lower-triangular Cholesky factor, shape ``(d, d)`` or ``(B, d, d)``.

    States of any event shape are flattened to ``d`` coordinates.

    Args:
        cholesky: Lower-triangular, non-singular (positive diagonal) factor.
    """

    cholesky: torch.Tensor = attrs.field(converter=lambda v: _as_tensor(v, "cholesky"))

    @cholesky.validator
    def _check(self, attribute, value):
        _check_matrix(value, "DenseCovariance cholesky")
        if value.shape[-1] != value.shape[-2]:
            raise ValueError(
                f"DenseCovariance cholesky must be square, got shape {tuple(value.shape)}"
            )
        if not torch.equal(value, torch.tril(value)):
            raise ValueError(
                "DenseCovariance cholesky must be lower triangular (torch.linalg.cholesky gives "
                "one); for a general or rectangular factor use FactorCovariance"
            )
        diagonal = torch.diagonal(value, dim1=-2, dim2=-1)
        if (diagonal <= 0).any():
            raise ValueError(
                "DenseCovariance cholesky must have a positive diagonal (a singular factor is not "
                "accepted; use FactorCovariance or DiagonalCovariance for degenerate noise)"
            )

    def noise_shape(self, event_shape):
        _check_rows(self.cholesky, event_shape, "DenseCovariance cholesky")
        return (math.prod(event_shape),)

    def full_range(self):
        return True

    def row_matrices(self):
        return self.cholesky.ndim == 3

    def shared_inverse(self, event_shape, dtype):
        # a triangular solve in float32 is not exact enough for an ill-conditioned L
        return not self.row_matrices() and dtype == _F64

    def inverse_apply(self, states, out):
        rows, d = states.numel() // self.cholesky.shape[-1], self.cholesky.shape[-1]
        factor = self.cholesky.to(states.device, states.dtype)
        torch.linalg.solve_triangular(factor.T, states.reshape(rows, d), upper=True, left=False,
                                      out=out.view(rows, d))  # z L^T = x: z = L^-1 x per row
        return out

    def apply(self, noise, event_shape):
        factor = self.cholesky.to(noise.device, noise.dtype)
        flat = (factor @ noise.unsqueeze(-1)).squeeze(-1)  # L xi
        return flat.reshape(noise.shape[0], *event_shape)

    def _whiten(self, gap):
        factor = self.cholesky.to(gap.device, _F64)
        flat = gap.reshape(gap.shape[0], -1, 1)
        factor = factor.expand(gap.shape[0], *factor.shape[-2:])
        whitened = torch.linalg.solve_triangular(factor, flat, upper=False).squeeze(-1)  # L^-1 gap
        return whitened, gap


@attrs.frozen
class FactorCovariance(Covariance):
    """A rectangular noise factor ``L`` of shape ``(d, n)`` or ``(B, d, n)`` (ALGORITHMS section 6).

    ``Sigma = L L^T`` may be singular; gaps are whitened with the pseudo-inverse (the minimum-norm
    noise-space gap), and a gap outside the range of ``L`` marks mutually singular kernels.

    Args:
        factor: The noise factor; states of any event shape are flattened to ``d`` coordinates.
    """

    factor: torch.Tensor = attrs.field(converter=lambda v: _as_tensor(v, "factor"))
    _pinv: torch.Tensor = attrs.field(init=False, repr=False, eq=False)

    @factor.validator
    def _check(self, attribute, value):
        _check_matrix(value, "FactorCovariance factor")

    def __attrs_post_init__(self):
        object.__setattr__(self, "_pinv", torch.linalg.pinv(self.factor.to(_F64)))

    def noise_shape(self, event_shape):
        _check_rows(self.factor, event_shape, "FactorCovariance factor")
        return (self.factor.shape[-1],)

    def row_matrices(self):
        return self.factor.ndim == 3

    def apply(self, noise, event_shape):
        factor = self.factor.to(noise.device, noise.dtype)
        flat = (factor @ noise.unsqueeze(-1)).squeeze(-1)  # L xi
        return flat.reshape(noise.shape[0], *event_shape)

    def _whiten(self, gap):
        pinv = self._pinv.to(gap.device)
        factor = self.factor.to(gap.device, _F64)
        flat = gap.reshape(gap.shape[0], -1, 1)
        whitened = pinv @ flat  # Delta = L^+ gap (minimum norm)
        projected = (factor @ whitened).reshape(gap.shape)  # L L^+ gap
        return whitened.squeeze(-1), projected
