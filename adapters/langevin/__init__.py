"""gaussspec.adapters.langevin: speculative unadjusted Langevin (ULA) on real posteriors.

* :func:`posterior` gives one of eight posteriordb posteriors as a ready target (batched torch log
  density on an unconstrained space, names, constrain map, reference draws).
"""

from gaussspec.adapters.langevin.posteriors import (
    Posterior,
    ReferenceDraws,
    posterior,
    posterior_names,
)

__all__ = [
    "Posterior",
    "ReferenceDraws",
    "posterior",
    "posterior_names",
]
