"""Rebuild ``alanine_dipeptide.pdb`` (ACE-ALA-NME, vacuum) from scratch.

Provenance of the shipped PDB: this script, nothing downloaded. The ten heavy atoms are placed
from textbook internal coordinates (Engh-Huber bond lengths and angles, trans peptide bonds,
L-alanine, phi = -80 deg, psi = 75 deg: the C7eq basin), OpenMM's ``Modeller.addHydrogens``
adds the hydrogens from its bundled residue templates, and the structure is energy-minimised in
vacuum with OpenMM's bundled Amber ff14SB (``amber14-all.xml``). The output is written with
OpenMM's ``PDBFile``. Run from the repository root::

    .venv/bin/python adapters/md/data/build_alanine_dipeptide.py
"""

from __future__ import annotations

import io
import pathlib

import numpy as np

_OUT = pathlib.Path(__file__).with_name("alanine_dipeptide.pdb")


def place(a, b, c, bond, angle_deg, torsion_deg):
    """Natural-extension reference frame: the atom d with |cd| = bond, angle bcd, torsion abcd."""
    angle, torsion = np.radians(angle_deg), np.radians(torsion_deg)
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    m = np.stack([bc, np.cross(normal, bc), normal], axis=1)
    local = bond * np.array(
        [-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)]
    )
    return c + m @ local


def heavy_atoms(phi: float = -80.0, psi: float = 75.0) -> dict[str, np.ndarray]:
    """Heavy-atom coordinates in angstrom (keys ``residue:atom``)."""
    ace_ch3 = np.array([0.0, 0.0, 0.0])
    ace_c = np.array([1.52, 0.0, 0.0])
    ala_n = place(np.array([0.0, 1.0, 0.0]), ace_ch3, ace_c, 1.33, 116.0, 0.0)
    ala_ca = place(ace_ch3, ace_c, ala_n, 1.46, 122.0, 180.0)  # omega = 180
    ala_c = place(ace_c, ala_n, ala_ca, 1.52, 111.0, phi)
    nme_n = place(ala_n, ala_ca, ala_c, 1.33, 116.0, psi)
    nme_c = place(ala_ca, ala_c, nme_n, 1.46, 122.0, 180.0)
    ace_o = place(ala_ca, ala_n, ace_c, 1.23, 123.0, 0.0)
    ala_o = place(nme_c, nme_n, ala_c, 1.23, 123.0, 0.0)
    # L-alanine: (N - CA) . ((C - CA) x (CB - CA)) > 0; the torsion C(ace)-N-CA-CB = phi - 120.
    ala_cb = place(ace_c, ala_n, ala_ca, 1.53, 110.5, phi - 120.0)
    chirality = np.dot(ala_n - ala_ca, np.cross(ala_c - ala_ca, ala_cb - ala_ca))
    if chirality <= 0:
        ala_cb = place(ace_c, ala_n, ala_ca, 1.53, 110.5, phi + 120.0)
    return {
        "ACE:CH3": ace_ch3, "ACE:C": ace_c, "ACE:O": ace_o,
        "ALA:N": ala_n, "ALA:CA": ala_ca, "ALA:C": ala_c, "ALA:O": ala_o, "ALA:CB": ala_cb,
        "NME:N": nme_n, "NME:C": nme_c,
    }


def heavy_pdb(atoms: dict[str, np.ndarray]) -> str:
    lines = []
    res_ids = {"ACE": 1, "ALA": 2, "NME": 3}
    for serial, (key, xyz) in enumerate(atoms.items(), start=1):
        res, name = key.split(":")
        element = name[0]
        lines.append(
            f"ATOM  {serial:5d} {name:<4s} {res:3s} A{res_ids[res]:4d}    "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {element:>2s}"
        )
    return "\n".join(lines) + "\nEND\n"


def main() -> None:
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    pdb = app.PDBFile(io.StringIO(heavy_pdb(heavy_atoms())))
    forcefield = app.ForceField("amber14-all.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    with open(_OUT, "w") as handle:
        handle.write(
            "REMARK   1 ALANINE DIPEPTIDE (ACE-ALA-NME), BUILT AND MINIMISED BY\n"
            "REMARK   1 adapters/md/data/build_alanine_dipeptide.py (AMBER FF14SB, VACUUM)\n"
        )
        app.PDBFile.writeFile(modeller.topology, state.getPositions(), handle)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    print(f"wrote {_OUT} ({modeller.topology.getNumAtoms()} atoms, E = {energy:.3f} kJ/mol)")


if __name__ == "__main__":
    main()
