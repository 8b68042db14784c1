"""The exactness kit: closed-form path laws, statistical tests, reference chains, mutants.

For this project's tests and for users' own kernels::

    from gaussspec.testing import check_exactness
    report = check_exactness(my_target, gs.FreeDrafter(), x0, generator=torch.Generator().manual_seed(0))
    assert not report.rejects(1e-3)
"""

from gaussspec.testing.check import ExactnessReport, check_exactness
from gaussspec.testing.mutants import MUTANTS, planted_mutant
from gaussspec.testing.statistics import (
    PathLaw,
    TestResult,
    acceptance_rate_test,
    energy_distance_test,
    first_step_delta,
    holm,
    ks_projection_test,
    path_law,
    path_law_test,
    two_sample_test,
)

__all__ = [
    "ExactnessReport",
    "MUTANTS",
    "PathLaw",
    "TestResult",
    "acceptance_rate_test",
    "check_exactness",
    "energy_distance_test",
    "first_step_delta",
    "holm",
    "ks_projection_test",
    "path_law",
    "path_law_test",
    "planted_mutant",
    "two_sample_test",
]
