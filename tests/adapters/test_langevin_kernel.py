"""ULAKernel and the ULA draft kernels: unit tests and bad input."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

import gaussspec as gs
from gaussspec.adapters import langevin

torch.set_num_threads(1)

D = 3
MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
A = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]], dtype=torch.float64)
PRECISION = A @ A.T + 0.5 * torch.eye(D, dtype=torch.float64)


def gaussian_log_density(x):
    z = x - MU
    return -0.5 * ((z @ PRECISION) * z).sum(-1)


def gaussian_gradient(x):
    return -(x - MU) @ PRECISION  # -P (x - mu), P symmetric


def _t(batch, step=0):
    return torch.full((batch,), step, dtype=torch.int64)


def _x(batch=5, seed=0):
    return torch.randn(batch, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- the kernel -----------------------------------------------------------------------------------


def test_evaluate_is_the_autograd_gradient_and_mean_splits():
    kernel = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D)
    x, t = _x(), _t(5)
    g = kernel.evaluate(x, t)
    assert torch.allclose(g, gaussian_gradient(x), atol=1e-12)
    assert torch.allclose(kernel.mean(x, t), x + 0.1 * g)
    assert torch.allclose(kernel.mean_from(x, t, g), kernel.mean(x, t))
    assert kernel.event_shape == (D,) and kernel.num_steps == 10 and kernel.splits_evaluation


def test_user_gradient_matches_autograd():
    auto = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D)
    user = langevin.ULAKernel(None, 0.1, 10, gradient=gaussian_gradient, dimension=D)
    x, t = _x(7), _t(7)
    assert torch.allclose(auto.mean(x, t), user.mean(x, t), atol=1e-12)


def test_gradient_is_batched_over_chains_and_blocks():
    kernel = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D)
    x = _x(40)
    rows = torch.stack([kernel.evaluate(x[i : i + 1], _t(1))[0] for i in range(40)])
    assert torch.allclose(kernel.evaluate(x, _t(40)), rows, atol=1e-12)


def test_evaluate_works_under_no_grad():
    kernel = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D)
    with torch.no_grad():
        g = kernel.evaluate(_x(), _t(5))
    assert torch.allclose(g, gaussian_gradient(_x()), atol=1e-12)


@pytest.mark.parametrize("kind", ["identity", "diagonal", "dense"])
def test_covariance_is_2hM_in_the_right_class(kind):
    h = 0.05
    precond = {
        "identity": None,
        "diagonal": torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64),
        "dense": torch.linalg.inv(PRECISION),
    }[kind]
    kernel = langevin.ULAKernel(gaussian_log_density, h, 10, preconditioner=precond, dimension=D)
    cov = kernel.covariance(_t(4))
    expected_class = {
        "identity": gs.IsotropicCovariance,
        "diagonal": gs.DiagonalCovariance,
        "dense": gs.DenseCovariance,
    }[kind]
    assert isinstance(cov, expected_class)
    # Sigma = L L^T recovered column by column from apply(identity noise)
    factor = torch.stack([cov.apply(torch.eye(D, dtype=torch.float64)[i : i + 1], (D,))[0] for i in range(D)], 1)
    m = torch.eye(D, dtype=torch.float64) if precond is None else (torch.diag(precond) if precond.ndim == 1 else precond)
    assert torch.allclose(factor @ factor.T, 2 * h * m, atol=1e-12)
    x, t = _x(), _t(5)
    assert torch.allclose(kernel.mean(x, t), x + h * gaussian_gradient(x) @ m, atol=1e-12)


def test_posterior_target_knows_dimension_and_initial_state():
    post = langevin.posterior("kidiq")
    kernel = langevin.ULAKernel(post, 1e-3, 5)
    assert kernel.event_shape == (3,)
    x0 = kernel.initial_state(4, torch.Generator().manual_seed(0))
    assert x0.shape == (4, 3) and torch.isfinite(kernel.evaluate(x0, _t(4))).all()


def test_ula_marginal_variance_matches_closed_form():
    """ULA on N(0, s^2 I) from x0 = 0 is an AR(1): Var x_K = 2h (1 - a^{2K}) / (1 - a^2), a = 1 - h/s^2.

    Test: chi-square test of the pooled sample variance (2000 chains x 3 coordinates), two-sided,
    false-alarm budget 1e-3. Mutant: noise std sqrt(h) instead of sqrt(2h) (variance halved).
    """
    s2, h, steps, chains = 2.0, 0.3, 12, 2000

    def log_density(x):
        return -0.5 * (x * x).sum(-1) / s2

    a = 1.0 - h / s2
    expected = 2 * h * (1 - a ** (2 * steps)) / (1 - a * a)

    def p_value(variance_scale):
        kernel = langevin.ULAKernel(log_density, h, steps, dimension=3)
        out = gs.sample_chain(kernel, torch.zeros(chains, 3, dtype=torch.float64),
                              generator=torch.Generator().manual_seed(11))
        stat = (out.samples**2).sum() / (expected * variance_scale)
        dof = chains * 3
        cdf = scipy.stats.chi2.cdf(float(stat), dof)
        return 2 * min(cdf, 1 - cdf)

    assert p_value(1.0) > 1e-3
    assert p_value(2.0) < 1e-3  # the planted mutant: a kernel whose variance is h, not 2h


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_or_non_finite_step_size(bad):
    with pytest.raises(ValueError, match="step_size"):
        langevin.ULAKernel(gaussian_log_density, bad, 10, dimension=D)


def test_step_size_type_and_num_steps():
    with pytest.raises(TypeError, match="step_size"):
        langevin.ULAKernel(gaussian_log_density, "0.1", 10, dimension=D)
    with pytest.raises(ValueError, match="num_steps"):
        langevin.ULAKernel(gaussian_log_density, 0.1, 0, dimension=D)


def test_needs_a_log_density_or_gradient():
    with pytest.raises(ValueError, match="log_density or a gradient"):
        langevin.ULAKernel(None, 0.1, 10, dimension=D)


@pytest.mark.parametrize(
    "precond, message",
    [
        (torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64), "positive definite"),
        (torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64), "symmetric"),
        (torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64), "positive"),
        (torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64), "finite"),
        (torch.ones(2, 2, 2, dtype=torch.float64), "shape"),
        (torch.ones(4, dtype=torch.float64), "dimension"),
    ],
)
def test_bad_preconditioner(precond, message):
    with pytest.raises(ValueError, match=message):
        langevin.ULAKernel(gaussian_log_density, 0.1, 10, preconditioner=precond, dimension=D)


def test_log_density_nan_inf_and_shape_errors_name_the_step():
    def nan_density(x):
        out = gaussian_log_density(x)
        return torch.where(x[:, 0] > 0, out * float("nan"), out)

    kernel = langevin.ULAKernel(nan_density, 0.1, 10, dimension=D)
    x = _x()
    x[2, 0] = 1.0
    with pytest.raises(ValueError, match=r"NaN at steps t=\[7"):
        kernel.gradient(x, _t(5, step=7))

    inf_kernel = langevin.ULAKernel(lambda x: gaussian_log_density(x) + float("inf"), 0.1, 10, dimension=D)
    with pytest.raises(ValueError, match="inf at steps"):
        inf_kernel.gradient(_x(), _t(5, step=3))

    for wrong in (lambda x: gaussian_log_density(x)[:, None], lambda x: gaussian_log_density(x).sum()):
        with pytest.raises(ValueError, match=r"shape \(B,\)"):
            langevin.ULAKernel(wrong, 0.1, 10, dimension=D).evaluate(_x(), _t(5))

    bad_grad = langevin.ULAKernel(None, 0.1, 10, gradient=lambda x: x[:, :2], dimension=D)
    with pytest.raises(ValueError, match="same shape"):
        bad_grad.evaluate(_x(), _t(5))


def test_the_sampler_call_marks_non_finite_rows_nan_and_keeps_the_others():
    """``evaluate`` (what the sampler calls, on verification blocks that hold drafted states)
    returns NaN where the log density or its gradient is not finite, the exact gradient elsewhere;
    a user's gradient likewise."""
    def fenced(x):
        out = gaussian_log_density(x)
        return torch.where(x[:, 0] > 0.5, torch.full_like(out, float("inf")), out)

    x = _x(8)
    outside = x[:, 0] > 0.5
    assert 0 < int(outside.sum()) < 8
    for kernel in (langevin.ULAKernel(fenced, 0.1, 10, dimension=D),
                   langevin.ULAKernel(None, 0.1, 10, dimension=D, gradient=lambda y: torch.where(
                       y[:, :1] > 0.5, float("nan"), gaussian_gradient(y)))):
        grad = kernel.evaluate(x, _t(8))
        assert torch.isnan(grad[outside]).all()
        torch.testing.assert_close(grad[~outside], gaussian_gradient(x[~outside]))
        with pytest.raises(ValueError, match="at steps t="):
            kernel.gradient(x, _t(8))


def test_nan_during_sampling_is_an_error_not_a_silent_drop():
    kernel = langevin.ULAKernel(lambda x: gaussian_log_density(x) * float("nan"), 0.1, 10, dimension=D)
    with pytest.raises(gs.NonFiniteMeanError, match="ULAKernel mean is NaN or inf at step t=0"):
        gs.sample_chain(kernel, _x(), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("verification", ["block", "token"])
def test_a_draft_running_into_an_undefined_target_is_rejected_and_a_chain_reaching_it_fails(
        verification):
    """The target's log density is +inf beyond x_0 = level; a draft pushed along x_0 runs past
    the fence within a few positions. Far beyond the target's mass (level 7, 12 sd), the plain
    chain never gets there and the speculative one completes (it raised before: every drafted
    state's mean was checked); inside it (level 1.6), both fail at the chain that gets there."""
    def fenced(level):
        def log_density(x):
            out = gaussian_log_density(x)
            return torch.where(x[:, 0] > level, torch.full_like(out, float("inf")), out)
        return log_density

    x0 = MU.repeat(4, 1)
    push = torch.tensor([60.0, 0.0, 0.0], dtype=torch.float64)  # 6 a step along x_0 (h = 0.1)
    for level, fails in ((7.0, False), (1.6, True)):
        target = langevin.ULAKernel(fenced(level), 0.1, 60, dimension=D)
        draft = langevin.DraftULAKernel(target, lambda x: gaussian_gradient(x) + 0.1 * push)
        far = langevin.DraftULAKernel(target, lambda x: gaussian_gradient(x) + push)
        for drafter in (gs.KernelDrafter(draft), gs.KernelDrafter(far)):
            sampler = gs.SpeculativeSampler(target, drafter, 12, verification)
            run = lambda: sampler.sample(x0, generator=torch.Generator().manual_seed(1),  # noqa: E731
                                         return_trajectory=True)
            if fails:
                with pytest.raises(gs.NonFiniteMeanError, match="ULAKernel mean is NaN or inf"):
                    run()
            else:
                result = run()
                assert torch.isfinite(result.trajectory).all()
                assert float(result.trajectory[..., 0].max()) < level


def test_unknown_posterior_lists_known_ones():
    with pytest.raises(ValueError) as info:
        langevin.posterior("ten_schools")
    for name in langevin.posterior_names():
        assert name in str(info.value)


def test_short_and_full_names_give_the_same_posterior():
    assert langevin.posterior("eight_schools_noncentered") is langevin.posterior(
        "eight_schools-eight_schools_noncentered"
    )


def test_wrong_state_shape():
    kernel = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D)
    with pytest.raises(ValueError, match="shape"):
        kernel.evaluate(torch.zeros(4, D + 1, dtype=torch.float64), _t(4))


# --- draft kernels ---------------------------------------------------------------------------------------


def test_drafts_share_the_target_covariance_object():
    post = langevin.posterior("sblrc")
    target = langevin.ULAKernel(post, 0.05, 10, preconditioner=post.reference_covariance())
    drafts = [
        langevin.laplace_draft(target),
        langevin.low_precision_draft(target),
        langevin.subsample_draft(target, 50, torch.Generator().manual_seed(0)),
    ]
    for draft in drafts:
        assert draft.covariance(_t(3)) is target.covariance(_t(3))
        assert draft.num_steps == target.num_steps and draft.event_shape == target.event_shape
        gs.SpeculativeSampler(target, gs.KernelDrafter(draft), draft_length=4)  # accepted by the core


def test_laplace_draft_is_exact_on_a_gaussian_target():
    kernel = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D, initial_point=torch.zeros(D))
    draft = langevin.laplace_draft(kernel)
    assert torch.allclose(draft.approximation.mode, MU, atol=1e-8)
    x, t = _x(), _t(5)
    assert torch.allclose(draft.mean(x, t), kernel.mean(x, t), atol=1e-10)
    assert torch.allclose(draft.mean(x, t), draft.mean_from(x, t, draft.evaluate(x, t)), atol=1e-12)


def test_laplace_needs_a_mode():
    kernel = langevin.ULAKernel(lambda x: (x * x).sum(-1), 0.1, 10, dimension=D, initial_point=torch.ones(D))
    with pytest.raises(ValueError, match="negative definite"):
        langevin.laplace_draft(kernel)


def test_low_precision_draft_is_close_and_float64():
    post = langevin.posterior("arK")
    target = langevin.ULAKernel(post, 0.05, 10, preconditioner=post.reference_covariance())
    draft = langevin.low_precision_draft(target)
    x = post.initial_state(6, torch.Generator().manual_seed(0))
    g_draft, g_target = draft.evaluate(x, _t(6)), target.evaluate(x, _t(6))
    assert g_draft.dtype == torch.float64
    assert not torch.equal(g_draft, g_target)
    assert torch.allclose(g_draft, g_target, rtol=1e-3, atol=1e-3 * float(g_target.abs().max()))


def test_full_subsample_is_the_target_and_unsupported_posteriors_raise():
    post = langevin.posterior("kidiq")
    target = langevin.ULAKernel(post, 0.05, 10)
    full = langevin.subsample_draft(target, post.data_size)
    x = post.initial_state(4, torch.Generator().manual_seed(0))
    assert torch.allclose(full.evaluate(x, _t(4)), target.evaluate(x, _t(4)), rtol=1e-10)
    with pytest.raises(ValueError, match="does not support data subsampling"):
        langevin.subsample_draft(langevin.ULAKernel(langevin.posterior("garch"), 0.05, 10), 10)
    with pytest.raises(ValueError, match="subsample size"):
        langevin.subsample_draft(target, post.data_size + 1)


def test_non_finite_draft_gradient_falls_back_to_the_target():
    kernel = langevin.ULAKernel(gaussian_log_density, 0.1, 10, dimension=D)
    draft = langevin.DraftULAKernel(kernel, lambda x: torch.full_like(x, math.nan))
    x, t = _x(), _t(5)
    assert torch.allclose(draft.mean(x, t), kernel.mean(x, t)) and draft.fallbacks == 5
