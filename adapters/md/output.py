"""Trajectory files, backbone dihedrals and Ramachandran plots.

* :class:`TrajectoryWriter`: streams frames of one chain to DCD or XTC (through mdtraj) or to an
  ASE ``.traj`` file, flushing after every write so that a run that stops early keeps what it
  wrote.
* :func:`dihedrals`: batched dihedral angles in torch (phi/psi of alanine dipeptide with
  :func:`~gaussspec.adapters.md.systems.phi_psi_indices`).
* :func:`ramachandran_plot`: side-by-side phi/psi histograms (e.g. speculative against plain).
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from gaussspec.adapters.md.units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL

__all__ = ["TrajectoryWriter", "dihedrals", "ramachandran_plot"]

_FORMATS = (".dcd", ".xtc", ".traj")


class TrajectoryWriter:
    """Write frames ``(T, N, 3)`` in nm to a DCD, XTC (mdtraj) or ASE ``.traj`` file.

    Args:
        path: Output file; the suffix picks the format (``.dcd``, ``.xtc``, ``.traj``).
        topology: An ``openmm.app.Topology`` or ``mdtraj.Topology`` (DCD/XTC; written as a PDB
            beside the trajectory for viewers), or an ``ase.Atoms`` (``.traj``).
        timestep: Time between written frames in ps (XTC time stamps).

    Use as a context manager; :meth:`write` may be called any number of times.
    """

    def __init__(self, path, topology, timestep: float = 1.0):
        self.path = pathlib.Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FORMATS:
            raise ValueError(f"unknown trajectory format {suffix!r}; use one of {_FORMATS}")
        self.format = suffix
        self.timestep = float(timestep)
        self.frames = 0
        if suffix == ".traj":
            from ase.io.trajectory import Trajectory

            if not hasattr(topology, "get_chemical_symbols"):
                raise TypeError(".traj output needs an ase.Atoms as topology")
            self._atoms = topology.copy()
            self._atoms.calc = None
            self._file = Trajectory(str(self.path), "w")
            return
        import mdtraj

        if not isinstance(topology, mdtraj.Topology):
            topology = mdtraj.Topology.from_openmm(topology)
        self._topology = topology
        if suffix == ".dcd":
            self._file = mdtraj.formats.DCDTrajectoryFile(str(self.path), "w", force_overwrite=True)
        else:
            self._file = mdtraj.formats.XTCTrajectoryFile(str(self.path), "w", force_overwrite=True)

    def write(self, positions, energies=None) -> None:
        """Append frames: positions ``(T, N, 3)`` (or ``(N, 3)``) in nm; energies ``(T,)`` kJ/mol (.traj)."""
        xyz = positions.detach().cpu().double().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions, dtype=np.float64)
        if xyz.ndim == 2:
            xyz = xyz[None]
        if not np.isfinite(xyz).all():
            raise ValueError("refusing to write non-finite positions")
        if self.format == ".traj":
            from ase.calculators.singlepoint import SinglePointCalculator

            for n, frame in enumerate(xyz):
                atoms = self._atoms.copy()
                atoms.positions = frame / ANGSTROM_TO_NM
                if energies is not None:
                    atoms.calc = SinglePointCalculator(atoms, energy=float(energies[n]) / EV_TO_KJ_PER_MOL)
                self._file.write(atoms)
        elif self.format == ".dcd":
            self._file.write(xyz / ANGSTROM_TO_NM)  # DCD stores angstrom
        else:
            time = self.timestep * (self.frames + np.arange(len(xyz)))
            self._file.write(xyz.astype(np.float32), time=time.astype(np.float32))
            self._file.flush()
        self.frames += len(xyz)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def dihedrals(positions: torch.Tensor, index) -> torch.Tensor:
    """Dihedral angles in degrees, IUPAC convention, for positions ``(..., N, 3)`` and four atom indices."""
    x = torch.as_tensor(positions, dtype=torch.float64)
    p0, p1, p2, p3 = (x[..., i, :] for i in index)
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = torch.linalg.cross(b0, b1), torch.linalg.cross(b1, b2)
    sine = (torch.linalg.cross(n1, n2) * b1).sum(-1) / b1.norm(dim=-1)
    return torch.rad2deg(torch.atan2(sine, (n1 * n2).sum(-1)))  # phi = atan2((n1 x n2) . b1/|b1|, n1 . n2)


def ramachandran_plot(panels: dict, path, bins: int = 72, title: str | None = None) -> pathlib.Path:
    """Phi/psi 2-D histograms side by side, one panel per entry.

    Args:
        panels: ``{label: (phi_degrees, psi_degrees)}`` arrays of equal length per label.
        path: Output image (PNG, PDF, SVG).
        bins: Histogram bins per axis over [-180, 180).
        title: Optional figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("panels is empty: pass {label: (phi, psi)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    edges = np.linspace(-180, 180, bins + 1)
    for ax, (label, (phi, psi)) in zip(axes[0], panels.items()):
        phi = np.asarray(phi, dtype=float).ravel()
        psi = np.asarray(psi, dtype=float).ravel()
        hist, _, _ = np.histogram2d(phi, psi, bins=[edges, edges])
        with np.errstate(divide="ignore"):
            free = -np.log(hist.T / hist.max())  # free energy in kT, up to a constant
        mesh = ax.pcolormesh(edges, edges, np.where(np.isfinite(free), free, np.nan), cmap="viridis", vmax=8)
        ax.set_title(f"{label}\n{len(phi)} frames", fontsize=10)
        ax.set_xlabel("phi (deg)")
        ax.set_ylabel("psi (deg)")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_aspect("equal")
    fig.colorbar(mesh, ax=axes[0].tolist(), label="-ln p (kT)")
    if title:
        fig.suptitle(title)
    path = pathlib.Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

