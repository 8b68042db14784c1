"""gaussspec.adapters.langevin: speculative unadjusted Langevin (ULA) on real posteriors.

* :func:`posterior` gives one of eight posteriordb posteriors as a ready target (batched torch log
  density on an unconstrained space, names, constrain map, reference draws).
* :class:`ULAKernel` is ULA, ``x' ~ N(x + h M grad log pi(x), 2 h M)``, as a
  :class:`gaussspec.GaussianKernel` (``evaluate`` is the gradient, so the core's frozen and free
  drafters work).
* Draft kernels needing no training, for ``gs.KernelDrafter``: :func:`laplace_draft`,
  :func:`low_precision_draft`, :func:`subsample_draft`.
* :func:`sample_posterior` runs speculative ULA and returns ``(chain, draw, *param)`` arrays in
  constrained names (optionally ArviZ ``InferenceData``); :func:`run_sample_command` backs the
  command line ``gaussspec sample``.
"""

from gaussspec.adapters.langevin.drafts import (
    DraftULAKernel,
    LaplaceApproximation,
    LaplaceDraftKernel,
    LowPrecisionDraftKernel,
    find_mode,
    laplace_draft,
    low_precision_draft,
    subsample_draft,
)
from gaussspec.adapters.langevin.kernel import ULAKernel, autograd_gradient
from gaussspec.adapters.langevin.output import (
    DRAFTERS,
    PosteriorSamples,
    group_parameters,
    run_sample_command,
    sample_posterior,
    to_inference_data,
)
from gaussspec.adapters.langevin.posteriors import (
    Posterior,
    ReferenceDraws,
    posterior,
    posterior_names,
)

__all__ = [
    "DRAFTERS",
    "PosteriorSamples",
    "group_parameters",
    "run_sample_command",
    "sample_posterior",
    "to_inference_data",
    "DraftULAKernel",
    "LaplaceApproximation",
    "LaplaceDraftKernel",
    "LowPrecisionDraftKernel",
    "Posterior",
    "ReferenceDraws",
    "ULAKernel",
    "autograd_gradient",
    "find_mode",
    "laplace_draft",
    "low_precision_draft",
    "posterior",
    "posterior_names",
    "subsample_draft",
]
