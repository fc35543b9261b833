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
import zlib
from pathlib import Path

from sepclr_med.errors import SepclrError
from sepclr_med.run import Run

FORMAT = "sepclr-med-model"
FORMAT_VERSION = 2  # 2: composite sizes in report_reference.npz
OLDEST_READABLE = 2  # earlier files lack arrays reports need: export the run again
MASK_MEMBER = "mask.nii.gz"
MAX_UNPACKED = 4 * 2**30  # bytes: a model file that unpacks to more is refused (a ZIP bomb, not a model)
REQUIRED = (
    "MODEL_CARD.md",
    "config.toml",
    "model.pt",
    "versions.json",
    "verdict.json",
    "reference_control_mean.nii.gz",
    "report_reference.npz",
)
MEMBERS = ("manifest.json", *REQUIRED, MASK_MEMBER)  # every name a model file may hold


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

    def __reduce__(self):
        """A copy (``copy.deepcopy``, pickling) unpacks the file again into its own folder."""
        return (type(self), (self.file,))

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
    """Check the archive (known flat members only, each listed in the manifest with its digest,
    the required ones present, a bounded unpacked size) and unpack it into ``folder``."""

    def refuse(why: str) -> SepclrError:
        return SepclrError(f"{file} is not a usable sepclr-med model file: {why}")

    def read(name: str) -> bytes:
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:  # a bad CRC, a truncated stream
            raise refuse(f"member {name} cannot be read: the file is damaged ({type(exc).__name__}: {exc})") from None

    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as exc:
        raise refuse(f"it is damaged or not a model file ({exc})") from None
    except OSError as exc:
        raise refuse(f"it cannot be read ({exc})") from None
    with archive:
        infos = {i.filename: i for i in archive.infolist()}
        unknown = sorted(set(infos) - set(MEMBERS))
        if unknown or "manifest.json" not in infos:
            raise refuse(
                f"unexpected members {unknown}"
                if unknown
                else "it holds no manifest.json (not written by `sepclr-med export`)"
            )
        if sum(i.file_size for i in infos.values()) > MAX_UNPACKED:
            raise refuse(f"it would unpack to more than {MAX_UNPACKED / 2**30:.0f} GiB")
        try:
            manifest = json.loads(read("manifest.json"))
            listed = dict(manifest["members"])
            version = int(manifest.get("format_version", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise refuse(f"its manifest.json cannot be read ({type(exc).__name__}: {exc})") from None
        if manifest.get("format") != FORMAT or version > FORMAT_VERSION:
            raise refuse(
                f"format {manifest.get('format')!r} version {version} is not one this version reads "
                f"({FORMAT} {OLDEST_READABLE}-{FORMAT_VERSION}); update sepclr-med"
            )
        if version < OLDEST_READABLE:
            raise refuse(
                f"it was written by an earlier sepclr-med (format version {version}, this one reads "
                f"{OLDEST_READABLE}-{FORMAT_VERSION}); export the run again with `sepclr-med export`"
            )
        if set(infos) - {"manifest.json"} != set(listed) or not set(REQUIRED) <= set(listed):
            missing = sorted(set(REQUIRED) - set(listed)) or sorted(set(listed) ^ (set(infos) - {"manifest.json"}))
            raise refuse(f"members and manifest disagree, or members are missing ({missing})")
        for name, digest in listed.items():
            data = read(name)
            if hashlib.sha256(data).hexdigest() != digest:
                raise refuse(f"member {name} does not match its digest in manifest.json (damaged file?)")
            (folder / name).write_bytes(data)
    return manifest
