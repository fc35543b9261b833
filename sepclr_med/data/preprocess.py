"""Deterministic preprocessing: load, RAS, resample to the run's grid, brain-mask normalise.

Intensity normalisation (``PreprocessConfig.intensity``):

``"cohort"`` (default)
    Divide every image by **one constant for the whole cohort** (the median over control images
    of the 99th percentile inside the brain mask, fitted once and stored with the run), then zero
    outside the mask. Between-subject differences survive: global atrophy with age, site gain.
``"fixed"``
    Divide by ``scale`` (e.g. 1 for modulated GM maps already in [0, 1]).
``"zscore"``
    Per volume, inside the mask. Removes global effects (age atrophy becomes invisible to the
    common space); use only for images whose global intensity carries no meaning.
``"none"``
    Mask only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    CastToTyped,
    Compose,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    SpatialResample,
    Transform,
)

from sepclr_med.errors import SepclrError
from sepclr_med.io.grid import Grid

INTENSITY_MODES = ("cohort", "fixed", "zscore", "none")
CROP_MODES = ("brain", "none")
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
# voxels kept around the mask's bounding box. Outside the mask every voxel is 0, so the crop loses
# nothing; the margin only keeps the brain's edge inside rotated views. MNI 1.5 mm (121x145x121):
# margin 0/1/2 -> 2.31/2.42/2.53 MiB per subject in float16, views losing a median 0.28%/0.13%/0.04%
# of GM mass against uncropped views (docs/data.md)
CROP_MARGIN = 1


@dataclass
class PreprocessConfig:
    """Preprocessing settings; ``resolve`` fills the grid and scale from a cohort.

    Parameters
    ----------
    voxel_size : float or None
        Isotropic voxel size (mm) of the target grid; None keeps the reference grid's.
    spatial_size : tuple of int or None
        Shape of a centre crop (or pad) of the grid; None keeps the grid's shape. The grid itself
        becomes the crop: ``grid_affine`` is the crop's, so every image made on it (maps,
        reports) lies where the voxels were.
    intensity : {"cohort", "fixed", "zscore", "none"}
        Normalisation inside the brain mask (module docstring).
    scale : float or None
        Divisor of ``"fixed"``/``"cohort"``; fitted by ``resolve`` for ``"cohort"``.
    mask : str
        ``"mni152"`` (nilearn's MNI152 brain mask on the grid), ``"nonzero"`` (per image) or
        the path of a mask NIfTI.
    crop : {"brain", "none"}
        ``"brain"``: ``resolve`` shrinks a new grid to the mask's bounding box plus
        ``CROP_MARGIN`` voxels (the affine follows), so no voxel that is always 0 is stored or
        convolved (MNI 1.5 mm: 99x122x105, 60% of the 121x145x121 grid); not with ``spatial_size`` or
        ``mask="nonzero"``. Runs stored before this option read as ``"none"``.
    dtype : {"float16", "float32"}
        Precision the volumes are stored in: preprocessing rounds every voxel to it, so the
        training cache, ``embed`` and ``explain`` see the same values (float16: half the memory;
        its error, relative 2^-11 at most, is measured in docs/data.md). Older runs: ``"float32"``.
    grid_affine, grid_shape
        The target grid (RAS+), set by ``resolve`` from the cohort's most common grid; stored as
        lists so that TOML and JSON hold them, read as one :class:`~sepclr_med.io.grid.Grid` by
        :attr:`grid`.
    """

    voxel_size: float | None = None
    spatial_size: tuple[int, int, int] | None = None
    intensity: str = "cohort"
    scale: float | None = None
    mask: str = "mni152"
    crop: str = "brain"
    dtype: str = "float16"
    grid_affine: list[list[float]] | None = None
    grid_shape: tuple[int, int, int] | None = None
    _mask_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_MODES:
            raise SepclrError(f"intensity must be one of {INTENSITY_MODES}, not {self.intensity!r}")
        if self.crop not in CROP_MODES:
            raise SepclrError(f"crop must be one of {CROP_MODES}, not {self.crop!r}")
        if self.dtype not in STORAGE_DTYPES:
            raise SepclrError(f"dtype must be one of {tuple(STORAGE_DTYPES)}, not {self.dtype!r}")
        self._crop_grid()

    def _crop_grid(self) -> None:
        """Make the grid the ``spatial_size`` crop (also for runs stored with the full grid)."""
        if self.spatial_size is None or self.grid_affine is None or self.grid_shape is None:
            return
        if tuple(self.grid_shape) != tuple(self.spatial_size):
            self._set_grid(self.grid.cropped(self.spatial_size))

    def _crop_to_brain(self) -> None:
        """Shrink the grid to the brain mask's bounding box plus ``CROP_MARGIN`` (``crop="brain"``)."""
        if self.crop != "brain" or self.spatial_size is not None or self.mask == "nonzero":
            return
        mask = self.mask_array()
        assert mask is not None
        if not mask.any():
            raise SepclrError(f"the brain mask {self.mask!r} has no voxel on the grid {self.grid.describe()}")
        inside = np.argwhere(mask)
        start = np.maximum(inside.min(0) - CROP_MARGIN, 0)
        stop = np.minimum(inside.max(0) + 1 + CROP_MARGIN, mask.shape)
        self._set_grid(self.grid.window(tuple(start), tuple(stop - start)))
        # the window of the mask itself: resampling the mask again onto the window could flip
        # nearest-neighbour ties at its edge (1.5 mm voxel centres fall half-way between 2 mm ones)
        self._mask_cache["mask"] = mask[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]

    def _set_grid(self, grid: Grid) -> None:
        """Store ``grid`` as TOML/JSON can hold it (affine rounded to 1e-6 mm, lists)."""
        x, y, z = grid.shape
        self.grid_affine, self.grid_shape = np.round(grid.affine, 6).tolist(), (x, y, z)

    @property
    def grid(self) -> Grid:
        """The model's input grid (shape and affine), once resolved."""
        if self.grid_affine is None or self.grid_shape is None:
            raise SepclrError("preprocessing settings are not resolved: call config.resolve(paths) first")
        return Grid(np.asarray(self.grid_affine), self.grid_shape)

    @property
    def resolved(self) -> bool:
        """True when the grid (and the scale, if needed) are set."""
        needs_scale = self.intensity in ("cohort", "fixed")
        return self.grid_affine is not None and (self.scale is not None or not needs_scale)

    def to_dict(self) -> dict:
        """JSON-serialisable settings (what a run stores)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        for key in ("spatial_size", "grid_shape"):
            out[key] = list(out[key]) if out[key] is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        for key in ("spatial_size", "grid_shape"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def hash(self) -> str:
        """Short digest of the settings: a cache made with other settings is never reused."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of preprocessed volumes (without the channel)."""
        shape = self.grid_shape
        if shape is None:
            raise SepclrError("preprocessing settings are not resolved: call config.resolve(paths) first")
        x, y, z = shape
        return (x, y, z)

    def resolve(
        self, image_paths: list[str], control_paths: list[str] | None = None, n_scale_images: int = 16
    ) -> PreprocessConfig:
        """A copy with the grid set from ``image_paths`` and the cohort scale fitted.

        Parameters
        ----------
        image_paths : list of str
            All images of the cohort; their most common grid becomes the reference.
        control_paths : list of str, optional
            Images used to fit the ``"cohort"`` scale (controls; defaults to all).
        n_scale_images : int
            At most this many images (evenly spaced) are read to fit the scale.
        """
        from sepclr_med.io.image_checks import reference_grid

        new = dataclasses.replace(self, _mask_cache={})
        if new.grid_affine is None:
            grid = reference_grid(image_paths).canonical()
            new._set_grid(grid.resized(new.voxel_size) if new.voxel_size is not None else grid)
            new._crop_grid()
            new._crop_to_brain()
        if new.intensity == "cohort" and new.scale is None:
            paths = control_paths or image_paths
            picks = [paths[i] for i in np.linspace(0, len(paths) - 1, min(n_scale_images, len(paths))).astype(int)]
            load = Compose(preprocessing(dataclasses.replace(new, intensity="none")))
            values = [
                float(np.percentile(v[v > 0], 99)) if (v := load({"image": p})["image"].numpy()).any() else 1.0
                for p in picks
            ]
            new.scale = round(float(np.median(values)), 6)
        if new.intensity == "fixed" and new.scale is None:
            new.scale = 1.0
        return new

    def mask_array(self) -> np.ndarray | None:
        """The brain mask on the target grid (bool), or None for ``"nonzero"``."""
        if self.mask == "nonzero":
            return None
        if "mask" not in self._mask_cache:
            import nibabel as nib
            from nilearn.image import resample_img

            if self.mask == "mni152":
                from nilearn.datasets import load_mni152_brain_mask

                src = load_mni152_brain_mask(resolution=2)
            else:
                src = nib.load(self.mask)
            src = nib.Nifti1Image(np.asarray(src.dataobj, dtype=np.float32), src.affine)
            img = resample_img(
                src,
                target_affine=np.asarray(self.grid_affine),
                target_shape=self.grid_shape,
                interpolation="nearest",
                force_resample=True,
                copy_header=True,
            )
            self._mask_cache["mask"] = np.asarray(img.dataobj) > 0.5
        return self._mask_cache["mask"]


class ResampleToGrid(Transform):
    """Resample a channel-first MetaTensor onto a fixed grid (affine + shape)."""

    def __init__(self, affine: np.ndarray, shape: tuple[int, ...], mode: str = "bilinear") -> None:
        self.affine = torch.as_tensor(np.asarray(affine, dtype=np.float64))
        self.shape = tuple(shape)
        # MONAI takes a torch dtype here at run time; its annotation names NumPy's only
        self.resample = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float32)  # type: ignore[arg-type]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.resample(img, dst_affine=self.affine, spatial_size=self.shape)


class ResampleToGridd(MapTransform):
    """Dictionary twin of :class:`ResampleToGrid`."""

    def __init__(
        self,
        keys: KeysCollection,
        affine: np.ndarray,
        shape: tuple[int, ...],
        mode: str = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ResampleToGrid(affine, shape, mode)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class BrainMaskNormalize(Transform):
    """Normalise intensities inside a brain mask; zero outside it.

    Parameters
    ----------
    mask : numpy.ndarray or None
        Spatial mask on the image grid; None uses the image's non-zero voxels.
    mode : {"cohort", "fixed", "zscore", "none"}
        ``"cohort"`` and ``"fixed"`` divide by ``scale`` (global differences kept);
        ``"zscore"`` standardises per volume (global differences removed).
    scale : float
        Divisor for ``"cohort"``/``"fixed"``.
    """

    def __init__(self, mask: np.ndarray | None, mode: str = "cohort", scale: float = 1.0) -> None:
        self.mask = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))
        self.mode = mode
        self.scale = float(scale)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        mask = (img[0] != 0) if self.mask is None else self.mask
        out = img.clone() * mask
        if self.mode in ("cohort", "fixed"):
            out = out / self.scale
        elif self.mode == "zscore":
            inside = img[:, mask]
            out = (img - inside.mean()) / (inside.std() + 1e-6) * mask
        return out


class BrainMaskNormalized(MapTransform):
    """Dictionary twin of :class:`BrainMaskNormalize`."""

    def __init__(
        self,
        keys: KeysCollection,
        mask: np.ndarray | None,
        mode: str = "cohort",
        scale: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BrainMaskNormalize(mask, mode, scale)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


def preprocessing(config: PreprocessConfig, keys: str = "image") -> list:
    """The deterministic MONAI dictionary transforms for a *resolved* ``config``.

    Returns
    -------
    list
        ``LoadImaged -> Orientationd(RAS) -> ResampleToGridd -> BrainMaskNormalized
        [-> CastToTyped(float16)] -> EnsureTyped`` (plain float32 tensors holding values of the
        storage ``dtype``, channel first; crops are part of the grid itself).
    """
    if config.grid_affine is None or config.grid_shape is None:
        raise SepclrError("preprocessing settings are not resolved: call config.resolve(paths) first")
    transforms = [
        LoadImaged(keys, image_only=True, ensure_channel_first=True, reader="NibabelReader"),
        Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        ResampleToGridd(keys, np.asarray(config.grid_affine), config.grid_shape),
        BrainMaskNormalized(
            keys, config.mask_array(), config.intensity, config.scale if config.scale is not None else 1.0
        ),
    ]
    if config.dtype != "float32":  # round to the storage precision: every consumer sees the cache's values
        transforms.append(CastToTyped(keys, dtype=STORAGE_DTYPES[config.dtype]))
    transforms.append(EnsureTyped(keys, data_type="tensor", dtype=torch.float32, track_meta=False))
    return transforms
