"""Figures for docs/method.md. Run: python docs/figures/make_figures.py"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from gaussspec.residual import residual_log_mass, sample_residual  # noqa: E402

HERE = Path(__file__).parent


def residual_figure():
    delta = 1.5
    s = np.linspace(-4, 6, 800)
    p, q = norm.pdf(s), norm.pdf(s - delta)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.plot(s, p, label="draft p (along e)", color="tab:blue")
    ax.plot(s, q, label="target q", color="tab:orange")
    for c, style in ((1.0, "-"), (0.3, "--")):
        mass = np.exp(residual_log_mass([np.log(c)], [delta])[0])
        r = np.maximum(c * q - p, 0) / mass
        ax.plot(s, r, style, color="tab:green", label=f"residual, c = {c} (mass {mass:.2f})")
        rng = np.random.default_rng(0)
        s_star, offset = sample_residual(np.full(20000, np.log(c)), np.full(20000, delta),
                                         rng.uniform(size=20000))
        ax.hist(s_star + offset, bins=80, density=True, alpha=0.25, color="tab:green")
    ax.axvline(delta / 2, color="grey", lw=0.8)
    ax.text(delta / 2 + 0.05, 0.02, "bisecting\nhyperplane", fontsize=8, color="grey")
    ax.set_xlabel("s = <y - m_p, e> in whitened units")
    ax.set_title("The 1-D weighted residual max(0, c q - p) and draws from it")
    ax.legend(fontsize=7)
    ax = axes[1]
    deltas = np.linspace(0, 5, 200)
    ax.plot(deltas, 2 * norm.cdf(-deltas / 2), color="tab:purple")
    ax.set_xlabel("whitened mean gap delta = |L^-1 (m_q - m_p)|")
    ax.set_ylabel("token-wise acceptance 2 Phi(-delta/2)")
    ax.set_title("Acceptance falls with the whitened gap")
    fig.tight_layout()
    fig.savefig(HERE / "residual.png", dpi=120)


if __name__ == "__main__":
    residual_figure()
