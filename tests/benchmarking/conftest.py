"""Loading the scripts of ``benchmarks/`` (not a package) as modules for their tests."""

import importlib.util
from pathlib import Path

import pytest

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def benchmark_script():
    """``benchmark_script(name)``: the module ``benchmarks/<name>.py``, freshly executed."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
