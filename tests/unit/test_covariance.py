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


@pytest.mark.parametrize("kind", ["isotropic", "diagonal"])
def test_trusted_covariances_act_like_checked_ones(kind):
    """``.trusted`` skips only the value checks (host reads): same noise, whitening, ranges."""
    cls = gs.IsotropicCovariance if kind == "isotropic" else gs.DiagonalCovariance
    std = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64)
    if kind == "diagonal":
        std = std[:, None].expand(3, 2)
    checked, trusted = cls(std), cls.trusted(std)
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gap = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(trusted.apply(noise, (2,)), checked.apply(noise, (2,)))
    assert torch.equal(trusted.step(gap, noise, (2,)), checked.step(gap, noise, (2,)))
    for a, b in zip(trusted.whiten(gap, gap.norm(dim=1), 1e-9), checked.whiten(gap, gap.norm(dim=1), 1e-9)):
        assert torch.equal(a, b)
    assert trusted.full_range() == checked.full_range() is False
    with pytest.raises(ValueError, match="negative"):
        cls(-std - 1)  # the checked constructor still checks
    cls.trusted(-std - 1)  # the trusted one does not read the values


def test_trusted_isotropic_still_checks_the_shape():
    with pytest.raises(ValueError, match=r"0-d or \(B,\) tensor"):
        gs.IsotropicCovariance.trusted(torch.ones(2, 2))
    with pytest.raises(TypeError, match="takes a tensor"):
        gs.IsotropicCovariance.trusted(0.5)
    with pytest.raises(TypeError, match="takes a tensor"):
        gs.DiagonalCovariance.trusted([0.5])
    assert gs.IsotropicCovariance.trusted(torch.tensor(0.5))._scalar == 0.5


def test_which_covariances_hold_a_matrix_per_row():
    """Those that do not draw a round's draft noise in one call (the sampler's ``_draft``)."""
    chol = torch.linalg.cholesky(torch.eye(3, dtype=torch.float64) * 2)
    assert not gs.IsotropicCovariance(torch.ones(4)).row_matrices()
    assert not gs.DiagonalCovariance(torch.ones(3)).row_matrices()
    assert not gs.DenseCovariance(chol).row_matrices()  # one factor for every row
    assert not gs.FactorCovariance(torch.ones(3, 2)).row_matrices()
    assert gs.DenseCovariance(chol.expand(4, 3, 3)).row_matrices()  # per row
    assert gs.FactorCovariance(torch.ones(4, 3, 2)).row_matrices()
