"""gaussspec: exact speculative sampling for Gaussian Markov chains.

The public API is the names below; everything else is private.
"""

from gaussspec.adaptive import AdaptiveDraftLength
from gaussspec.checkpoint import Checkpointing, load_trajectory
from gaussspec.covariance import (
    Covariance,
    DenseCovariance,
    DiagonalCovariance,
    FactorCovariance,
    IsotropicCovariance,
)
from gaussspec.drafters import Drafter, FreeDrafter, FrozenDrafter, KernelDrafter
from gaussspec.kernel import GaussianKernel
from gaussspec.randomness import chain_generators
from gaussspec.sampler import NonFiniteMeanError, SampleResult, SpeculativeSampler, sample_chain
from gaussspec.stats import SamplingStats

__version__ = "0.1.0"

__all__ = [
    "AdaptiveDraftLength",
    "Checkpointing",
    "Covariance",
    "DenseCovariance",
    "DiagonalCovariance",
    "Drafter",
    "FactorCovariance",
    "FreeDrafter",
    "FrozenDrafter",
    "GaussianKernel",
    "IsotropicCovariance",
    "KernelDrafter",
    "NonFiniteMeanError",
    "SampleResult",
    "SamplingStats",
    "SpeculativeSampler",
    "chain_generators",
    "load_trajectory",
    "sample_chain",
]
