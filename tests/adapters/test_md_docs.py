"""The first code block of docs/md.md runs as written: an OpenMM user's own System, accelerated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "md.md"


def test_openmm_quick_start_runs_in_under_15_lines():
    pytest.importorskip("openmm")
    torch.set_num_threads(1)
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    lines = [line for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) < 15, f"the quick start must stay under 15 lines, has {len(lines)}"
    code = code.replace("num_steps=2000", "num_steps=300")  # same code, shorter run
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    result = namespace["result"]
    assert result.trajectory.shape == (301, 1, 22, 3)
    assert result.stats.sequential_target_calls < 300 / 3  # the MTS drafter pays
