"""gaussspec: exact speculative sampling for Gaussian Markov chains."""

from gaussspec.covariance import (
    Covariance,
    DenseCovariance,
    DiagonalCovariance,
    FactorCovariance,
    IsotropicCovariance,
)
from gaussspec.kernel import GaussianKernel

__all__ = [
    "Covariance",
    "DenseCovariance",
    "DiagonalCovariance",
    "FactorCovariance",
    "GaussianKernel",
    "IsotropicCovariance",
]
