"""``gaussspec bench``: measured speed of speculative against plain sampling.

Suites (each writes ``<suite>.json``, ``<suite>.md`` and ``bench_<suite>_*.png`` into the results
folder; every speculative row sits beside the plain chain of the same kernel, measured in the same
run, interleaved, medians of repeats):

* ``synthetic``: dimension sweep and cost-ratio sweep (linear ULA, simulated call costs).
* ``comparisons``: token vs block verification, gamma vs reflection coupling, free vs frozen
  drafter, across draft lengths and noise levels.
* ``adaptive``: the adaptive draft length against every fixed draft length and the plain chain.
* ``ddpm``, ``langevin``, ``md``: the adapters' kernels and drafters (skipped with a note when an
  adapter or its benchmark script is unavailable).

Usage: ``gaussspec bench SUITE [--out DIR] [--quick] [--repeats N]`` or, from Python,
:func:`run_suite`.
"""

from gaussspec.benchmarking.runner import SUITES, main, run_suite

__all__ = ["SUITES", "main", "run_suite"]
