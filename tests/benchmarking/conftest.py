"""The scripts of ``benchmarks/`` (not a package), loaded as modules for their tests."""

import pytest

from gaussspec.benchmarking.adapter_suites import load_script


@pytest.fixture(scope="module")
def benchmark_script():
    """``benchmark_script(stem)``: the module ``benchmarks/<stem>.py``, freshly executed."""
    return load_script
