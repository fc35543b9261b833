"""Grey-matter probability in template space (``preprocess --tissue gm``), and its modulation by
the volume change of the registration (the VBM-like input SepCLR was published on)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from sepclr_med.registration.antspy import ants_affine_to_ras, ants_module, to_ants
from sepclr_med.registration.template import Template


def tissue_priors(template: Template) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(csf, gm, wm)`` prior probabilities on the template grid, from nilearn's MNI152 2009 GM
    and WM templates (CSF: the rest of the brain mask)."""
    return _priors(float(template.resolution))


@lru_cache(maxsize=2)
def _priors(resolution: float):
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template
    from nilearn.image import resample_to_img

    template = Template(resolution)
    t1, mask = template.images()
    inside = np.asarray(mask.dataobj) > 0

    def on_grid(img) -> np.ndarray:
        img = resample_to_img(img, t1, interpolation="continuous", force_resample=True, copy_header=True)
        return np.clip(np.asarray(img.dataobj, dtype=np.float32), 0, 1) * inside

    gm, wm = on_grid(load_mni152_gm_template(resolution=1)), on_grid(load_mni152_wm_template(resolution=1))
    csf = np.clip(1 - gm - wm, 0, 1) * inside
    return csf, gm, wm


def grey_matter(image: np.ndarray, brain: np.ndarray, template: Template) -> np.ndarray:
    """Grey-matter probability of a template-space scan inside its brain mask.

    ANTs Atropos (three classes: CSF, GM, WM), initialised and regularised by the template's
    tissue priors (prior weight 0.25, MRF smoothing 0.2), 5 iterations: initialised from the
    priors, not by k-means, so the same scan gives the same map.

    Parameters
    ----------
    image, brain : numpy.ndarray
        The scan and its brain mask on ``template``'s grid.
    template : Template

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], 0 outside ``brain``.
    """
    ants = ants_module()
    scan = to_ants(image, template.grid)
    mask = scan.new_image_like(brain.astype(np.float32))
    priors = [scan.new_image_like(p.astype(np.float32)) for p in tissue_priors(template)]
    result = ants.atropos(a=scan, x=mask, i=priors, m="[0.2,1x1x1]", c="[5,0]", priorweight=0.25)
    gm = result["probabilityimages"][1].numpy()
    return (np.clip(gm, 0, 1) * brain).astype(np.float32)


def volume_change(transforms: list[Path], template: Template) -> np.ndarray:
    """Scan volume per template volume at each template voxel: the determinant of the Jacobian of
    the template-to-scan mapping (SyN warp, then the affine), for modulating tissue maps."""
    ants = ants_module()
    affine = [p for p in transforms if p.suffix == ".mat"][-1]
    det = abs(float(np.linalg.det(ants_affine_to_ras(affine)[:3, :3])))
    warps = [p for p in transforms if p.suffix != ".mat"]
    if not warps:
        return np.full(template.grid.shape, det, dtype=np.float32)
    domain = to_ants(np.asarray(template.images()[0].dataobj), template.grid)
    jacobian = ants.create_jacobian_determinant_image(domain, str(warps[0]), do_log=False).numpy()
    return (det * jacobian).astype(np.float32)
