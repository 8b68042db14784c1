"""sample_posterior, ArviZ conversion and the command-line entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.adapters import langevin

torch.set_num_threads(1)


def test_group_parameters_builds_param_shapes():
    names = ("beta[1]", "beta[2]", "sigma", "m[1,1]", "m[2,1]", "m[1,2]", "m[2,2]")
    flat = np.arange(2 * 3 * 7, dtype=float).reshape(2, 3, 7)
    grouped = langevin.group_parameters(names, flat)
    assert list(grouped) == ["beta", "sigma", "m"]
    assert grouped["beta"].shape == (2, 3, 2) and grouped["sigma"].shape == (2, 3)
    assert grouped["m"].shape == (2, 3, 2, 2) and grouped["m"][0, 0, 0, 1] == flat[0, 0, 5]


@pytest.mark.parametrize("drafter", ["none", "free", "laplace"])
def test_sample_posterior_shapes_thinning_and_warmup(drafter):
    samples = langevin.sample_posterior(
        "kidiq", 0.2, draws=20, chains=2, drafter=drafter, draft_length=4, warmup=7, thin=3,
        seed=3, chunk_steps=10,
    )
    assert samples.constrained.shape == (2, 20, 3)
    assert samples.unconstrained.shape == (2, 20, 3)
    assert samples.draws["beta"].shape == (2, 20, 2) and samples.draws["sigma"].shape == (2, 20)
    assert samples["sigma"].min() > 0
    assert samples.accepted_length.shape == (2, 20) and samples.rounds.shape == (2, 20)
    assert samples.stats["steps"] == 2 * 20 * 3  # warm-up not counted; thin * draws per chain
    if drafter == "none":
        assert samples.stats["rounds"] == 60 and (samples.accepted_length == 0).all()
    else:
        assert samples.stats["rounds"] < 60


def test_thinning_keeps_every_thin_th_state_of_the_same_chain():
    """Same seed, plain ULA: thin=2 keeps the 2nd, 4th... states of the thin=1 run."""
    kwargs = dict(chains=1, drafter="none", warmup=0, seed=5, chunk_steps=8)
    full = langevin.sample_posterior("arK", 0.1, 16, thin=1, **kwargs)
    thinned = langevin.sample_posterior("arK", 0.1, 8, thin=2, **kwargs)
    assert np.allclose(thinned.unconstrained, full.unconstrained[:, 1::2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown drafter"):
        langevin.sample_posterior("kidiq", 0.1, 5, drafter="magic")
    with pytest.raises(ValueError, match="subsample"):
        langevin.sample_posterior("garch", 0.1, 5, drafter="subsample")
    with pytest.raises(ValueError, match="draws"):
        langevin.sample_posterior("kidiq", 0.1, 0)
    with pytest.raises(ValueError, match="unknown preconditioner"):
        langevin.sample_posterior("kidiq", 0.1, 5, preconditioner="magic")
    with pytest.raises(ValueError, match="known posteriors"):
        langevin.sample_posterior("nope", 0.1, 5)
    with pytest.raises(ValueError, match="step_size"):
        langevin.sample_posterior("kidiq", -0.1, 5)


def test_user_drafter_object_is_accepted():
    samples = langevin.sample_posterior("kidiq", 0.1, 10, drafter=gs.FrozenDrafter(), draft_length=3)
    assert samples.settings["drafter"] == "FrozenDrafter"


def test_inference_data_or_clear_error():
    try:
        import arviz  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install arviz"):
            langevin.sample_posterior("kidiq", 0.1, 5, inference_data=True)
        return
    samples, idata = langevin.sample_posterior("kidiq", 0.1, 6, chains=2, inference_data=True)
    assert idata.posterior["beta"].shape == (2, 6, 2)
    assert idata.posterior["sigma"].shape == (2, 6)
    assert set(idata.sample_stats.data_vars) == {"accepted_length", "rounds"}
    assert json.loads(idata.posterior.attrs["gaussspec_settings"])["chains"] == 2


def test_run_sample_command_writes_npz_and_json(tmp_path):
    out = langevin.run_sample_command(
        "eight_schools", 0.05, draws=12, chains=2, drafter="free", draft_length=4, warmup=5,
        thin=2, seed=0, out=tmp_path / "run",
    )
    with np.load(out["draws"]) as arrays:
        assert arrays["tau"].shape == (2, 12) and arrays["theta[8]"].shape == (2, 12)
        assert arrays["__unconstrained__"].shape == (2, 12, 10)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["settings"]["posterior"] == "eight_schools-eight_schools_noncentered"
    assert record["stats"]["rounds"] > 0 and "block_efficiency" in record["stats"]
    assert set(record["summary"]) == set(langevin.posterior("eight_schools").parameter_names)


def test_missing_arviz_gives_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "arviz", None)  # import arviz now raises ImportError
    samples = langevin.sample_posterior("kidiq", 0.1, 3)
    with pytest.raises(ImportError, match="pip install arviz"):
        langevin.to_inference_data(samples)
