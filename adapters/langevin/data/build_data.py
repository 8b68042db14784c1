"""Rebuild this folder from a posteriordb snapshot (run once by a developer, never at run time).

    python adapters/langevin/data/build_data.py /path/to/posteriordb

Copies the model data files (``data/<name>.json.zip``, byte for byte) and converts the reference
draws (``reference_draws/<posterior>.json.zip``: 10 chains x 1000 draws of the constrained
parameters) to ``reference_draws/<posterior>.npz`` holding ``draws`` of shape
``(chain, draw, parameter)`` in float32 and ``names`` (the parameter names in posteriordb's
order). float32 keeps the copy small (about 3 MB instead of 6 MB); its rounding (7 significant
digits) is far below the Monte Carlo error of any check made with the draws.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

POSTERIORS = {
    "sblrc-blr": "sblrc",
    "kidiq-kidscore_momiq": "kidiq",
    "eight_schools-eight_schools_noncentered": "eight_schools",
    "low_dim_gauss_mix-low_dim_gauss_mix": "low_dim_gauss_mix",
    "arK-arK": "arK",
    "garch-garch11": "garch",
    "gp_pois_regr-gp_pois_regr": "gp_pois_regr",
    "diamonds-diamonds": "diamonds",
}


def _read_zipped_json(path: Path):
    with zipfile.ZipFile(path) as archive:
        (member,) = archive.namelist()
        return json.loads(archive.read(member))


def main(source: Path) -> None:
    here = Path(__file__).resolve().parent
    (here / "data").mkdir(exist_ok=True)
    (here / "reference_draws").mkdir(exist_ok=True)
    shutil.copyfile(source / "LICENCE.md", here / "LICENCE.md")
    for posterior, data_name in POSTERIORS.items():
        shutil.copyfile(source / "data" / f"{data_name}.json.zip", here / "data" / f"{data_name}.json.zip")
        chains = _read_zipped_json(source / "reference_draws" / f"{posterior}.json.zip")
        names = list(chains[0].keys())
        draws = np.stack([np.stack([np.asarray(c[n], dtype=np.float64) for n in names], -1) for c in chains])
        np.savez_compressed(
            here / "reference_draws" / f"{posterior}.npz",
            draws=draws.astype(np.float32),
            names=np.asarray(names),
        )
        print(posterior, draws.shape)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
