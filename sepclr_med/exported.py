"""An exported model: one file a user can share, with no per-subject row (``sepclr-med export``).

The file is a ZIP archive of flat members (``MEMBERS``): the weights, the configuration (with
its preprocessing), the training verdict, the controls' mean image, the statistics reports
compare with (``report_reference.npz``), a model card with YAML metadata and a manifest of
SHA-256 digests. :func:`open_model` reads either a run directory or such a file; the file is
unpacked into a private temporary folder and read with the run directory's own code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import weakref
import zipfile
from pathlib import Path

from sepclr_med.errors import SepclrError
from sepclr_med.run import Run

FORMAT = "sepclr-med-model"
FORMAT_VERSION = 1
MASK_MEMBER = "mask.nii.gz"
MEMBERS = (
    "manifest.json",
    "MODEL_CARD.md",
    "config.toml",
    "model.pt",
    "versions.json",
    "verdict.json",
    "reference_control_mean.nii.gz",
    "report_reference.npz",
    MASK_MEMBER,
)


class ExportedModel(Run):
    """The read side of an exported model file; a :class:`~sepclr_med.run.Run` without
    per-subject files (no latents, split, cohort or scans).

    Parameters
    ----------
    file : path-like
        A file written by :func:`~sepclr_med.report.export.export_model`.
    """

    def __init__(self, file: str | os.PathLike) -> None:
        self.file = Path(file)
        folder = Path(tempfile.mkdtemp(prefix="sepclr-model-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True)
        self.manifest = _unpack(self.file, folder)
        super().__init__(folder)
        if (folder / MASK_MEMBER).is_file():  # a mask file travels in the archive
            self.config.preprocess = dataclasses.replace(
                self.config.preprocess, mask=str(folder / MASK_MEMBER), _mask_cache={}
            )

    @property
    def model_id(self) -> str:
        """The id of the run the file was exported from (the pages name it)."""
        return str(self.manifest["model_id"])

    def report_reference_state(self) -> dict:
        """The arrays of ``report_reference.npz`` (:class:`~sepclr_med.report.report_reference.ReportReference`)."""
        import numpy as np

        with np.load(self.path / "report_reference.npz", allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def reference_latents(self):
        raise SepclrError(f"{self.file} is an exported model: it holds no per-subject latents")


def open_model(path: str | os.PathLike) -> Run:
    """A run directory as :class:`~sepclr_med.run.Run`, an exported file as :class:`ExportedModel`."""
    path = Path(path)
    if path.is_dir():
        return Run(path)
    if path.is_file():
        return ExportedModel(path)
    raise SepclrError(f"{path}: no such run directory or exported model file")


def _unpack(file: Path, folder: Path) -> dict:
    """Check the archive (known flat members only, digests as in its manifest) and unpack it."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SepclrError(f"{file} is not a sepclr-med model file ({exc})") from None
    with archive:
        names = archive.namelist()
        unknown = sorted(set(names) - set(MEMBERS))
        if unknown or "manifest.json" not in names:
            raise SepclrError(f"{file} is not a sepclr-med model file (members {unknown or names} unexpected)")
        manifest = json.loads(archive.read("manifest.json"))
        if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
            raise SepclrError(
                f"{file}: format {manifest.get('format')!r} version {manifest.get('format_version')} is not one "
                f"this version reads ({FORMAT} {FORMAT_VERSION})"
            )
        for name, digest in manifest["members"].items():
            data = archive.read(name)
            if hashlib.sha256(data).hexdigest() != digest:
                raise SepclrError(f"{file}: member {name} does not match its digest in manifest.json (damaged file?)")
            (folder / name).write_bytes(data)
    return manifest
