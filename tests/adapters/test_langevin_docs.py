"""The first code block of docs/langevin.md runs as written (a user's own log density)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "langevin.md"


def test_quick_start_snippet_runs_and_is_short():
    torch.set_num_threads(1)
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    lines = [line for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) < 10, f"the quick start must stay under 10 lines, has {len(lines)}"
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    result = namespace["result"]
    assert result.trajectory.shape == (2001, 1, 5)
    assert result.stats.block_efficiency > 2
