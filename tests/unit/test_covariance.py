"""Covariances: draws, whitening, range tests and input validation."""

import pytest
import torch

import gaussspec as gs


def test_whitening_inverts_the_factor():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    chol = torch.linalg.cholesky(a @ a.T + torch.eye(4, dtype=torch.float64))
    for cov in (gs.IsotropicCovariance(torch.tensor([0.5, 2.0])),
                gs.DiagonalCovariance(torch.tensor([0.5, 1.0, 2.0, 3.0])),
                gs.DenseCovariance(chol),
                gs.FactorCovariance(torch.cat([chol, 0.5 * chol]))):
        event = (8,) if isinstance(cov, gs.FactorCovariance) else (4,)
        noise = cov.draw(2, event, generator, torch.device("cpu"))
        gap = cov.apply(noise, event)
        whitened, in_range = cov.whiten(gap, gap.norm(dim=1), 1e-10)
        assert in_range.all()
        assert torch.allclose(whitened, noise, atol=1e-10)


def test_zero_variance_coordinates_and_out_of_range_gaps():
    cov = gs.DiagonalCovariance(torch.tensor([1.0, 0.0]))
    whitened, in_range = cov.whiten(torch.tensor([[0.3, 0.0], [0.3, 1e-3]]), torch.ones(2), 1e-12)
    assert in_range.tolist() == [True, False]
    assert whitened[0].tolist() == pytest.approx([0.3, 0.0])
    iso = gs.IsotropicCovariance(0.0)
    _, in_range = iso.whiten(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.ones(2), 1e-12)
    assert in_range.tolist() == [True, False]


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: gs.IsotropicCovariance(-1.0), ">= 0"),
        (lambda: gs.DiagonalCovariance(torch.tensor([1.0, -0.1])), ">= 0"),
        (lambda: gs.IsotropicCovariance(torch.ones(2, 2)), "scalar or a \\(B,\\)"),
        (lambda: gs.DenseCovariance(torch.ones(3, 3)), "lower triangular"),
        (lambda: gs.DenseCovariance(torch.diag(torch.tensor([1.0, 0.0]))), "positive diagonal"),
        (lambda: gs.DenseCovariance(torch.ones(2, 3)), "square"),
        (lambda: gs.FactorCovariance(torch.ones(3)), "shape \\(d, n\\)"),
        (lambda: gs.IsotropicCovariance(float("nan")), "finite"),
        (lambda: gs.IsotropicCovariance("big"), "torch.Tensor or a float"),
    ],
)
def test_bad_covariances(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()
