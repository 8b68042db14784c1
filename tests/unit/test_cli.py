"""The command line: exit codes, factories, outputs."""

import json
from pathlib import Path

import numpy as np

from gaussspec.cli import main

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "custom_kernel.py")


def test_check_finds_no_difference_and_writes_json(tmp_path):
    out = tmp_path / "report.json"
    code = main(["check", "--target", f"{EXAMPLE}:make_target", "--drafter", "free",
                 "--chains", "600", "--draft-length", "4", "--seed", "1", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["difference"] is False and report["p_value"] > 1e-3


def test_check_exits_1_on_a_difference(tmp_path):
    module = tmp_path / "mismatch.py"
    module.write_text(
        "from gaussspec.testing.chains import OrnsteinUhlenbeckKernel\n"
        "def target():\n"
        "    return OrnsteinUhlenbeckKernel(num_steps=8)\n"
        "def draft():\n"
        "    return OrnsteinUhlenbeckKernel(num_steps=8, perturbation=1.0)\n"
    )
    # the engine itself is exact, so plant the always-accept mutant to get a difference
    from gaussspec.testing import planted_mutant

    with planted_mutant("always_accept"):
        code = main(["check", "--target", f"{module}:target", "--draft", f"{module}:draft",
                     "--chains", "2000", "--seed", "0"])
    assert code == 1


def test_usage_and_load_errors_exit_2(tmp_path, capsys):
    assert main(["check", "--target", "no_such_module:make", "--drafter", "free"]) == 2
    assert "cannot import" in capsys.readouterr().err
    assert main(["check", "--target", f"{EXAMPLE}:missing", "--drafter", "free"]) == 2
    assert main(["check", "--target", f"{EXAMPLE}:make_target"]) == 2  # no drafter
    assert main(["check", "--target", f"{EXAMPLE}:make_target", "--drafter", "stale"]) == 2
    assert main(["check", "--target", "justtext", "--drafter", "free"]) == 2


def test_sample_writes_npz_and_stats(tmp_path):
    out = tmp_path / "draws.npz"
    code = main(["sample", "--target", f"{EXAMPLE}:make_target", "--drafter", "frozen",
                 "--chains", "3", "--out", str(out), "--trajectory"])
    assert code == 0
    data = np.load(out)
    assert data["samples"].shape == (3, 2) and data["trajectory"].shape == (401, 3, 2)
    assert json.loads(out.with_suffix(".json").read_text())["rounds"] > 0


def test_sample_posterior_through_the_langevin_adapter(tmp_path, capsys):
    out = tmp_path / "kidiq.npz"
    code = main(["sample", "--posterior", "kidiq", "--step-size", "0.05", "--draws", "30",
                 "--langevin-drafter", "laplace", "--draft-length", "8", "--out", str(out)])
    assert code == 0
    assert np.load(out)["sigma"].shape == (1, 30)
    assert main(["sample", "--posterior", "no_such_posterior", "--step-size", "0.1"]) == 2
    assert "known posteriors" in capsys.readouterr().err
