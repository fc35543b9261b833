"""Figures of a subject page, rendered to PNG bytes (embedded in HTML as data URIs)."""

from __future__ import annotations

import base64
import html as html_text
import io
import re
import warnings

import numpy as np

from sepclr_med.explain.figures import display_threshold, pyplot
from sepclr_med.report.display_threshold import DISPLAY_VMAX

# nilearn's warnings when no voxel reaches the threshold: for a calibrated map that is a result
QUIET_NOTHING_SHOWN = "(empty mask|Could not determine cut coords|The given float value must not exceed)"


def png_data_uri(fig) -> str:
    """Close ``fig`` and return it as a ``data:image/png;base64,...`` URI."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def deviation_plot(controls: np.ndarray, patients: np.ndarray, value: float) -> str:
    """Histograms of the reference deviations with the subject's position."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 2.4))
    bins = np.linspace(0, max(controls.max(), patients.max(), value) * 1.05, 30)
    ax.hist(controls, bins=bins, alpha=0.6, label="training controls", color="#4c72b0")
    ax.hist(patients, bins=bins, alpha=0.6, label="training patients", color="#dd8452")
    ax.axvline(value, color="black", lw=2, label="this subject")
    ax.set_xlabel("salient deviation (Mahalanobis distance from controls)")
    ax.set_ylabel("subjects")
    ax.legend(fontsize=8, frameon=False)
    return png_data_uri(fig)


def position_plot(points: np.ndarray, clusters: np.ndarray, subject_xy: tuple[float, float]) -> str:
    """The training patients in salient space (first two principal axes), the subject as a star."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for c in np.unique(clusters):
        ax.scatter(*points[clusters == c].T, s=12, alpha=0.6, label=f"cluster {c + 1}")
    ax.scatter([subject_xy[0]], [subject_xy[1]], marker="*", s=220, color="black", label="this subject")
    ax.set_xlabel("salient PC 1")
    ax.set_ylabel("salient PC 2")
    ax.legend(fontsize=7, frameon=False)
    return png_data_uri(fig)


def brain_overlays(img, scan=None, threshold: float | None = None, calibrated: bool = False) -> dict[str, str]:
    """Glass brain and three orthogonal slices of a saliency map, as data URIs; with ``scan``
    (the subject's own preprocessed image, template space), the slices are drawn on it and
    ``"scan"`` holds a picture of the scan alone at the same cuts.

    ``threshold``: the smallest |value| coloured (default: the map's 90th percentile of
    |values|); ``calibrated``: the map is in units of a calibrated threshold (1), so the colour
    scale runs from 0 to ``DISPLAY_VMAX`` (saturating) and means the same on every page.
    """
    from nilearn import plotting

    plt = pyplot()
    data = np.asarray(img.dataobj)
    threshold = display_threshold(data) if threshold is None else threshold
    scale = {"vmax": DISPLAY_VMAX} if calibrated else {}
    background = {"bg_img": scan} if scan is not None else {}  # else nilearn's MNI152 template
    draws = [
        (
            "glass",
            lambda f: plotting.plot_glass_brain(
                img, threshold=threshold, plot_abs=False, colorbar=True, figure=f, **scale
            ),
        ),
        (
            "slices",
            lambda f: plotting.plot_stat_map(
                img, **background, threshold=threshold, display_mode="ortho", colorbar=True,
                draw_cross=False, figure=f, **scale,
            ),
        ),
    ]  # fmt: skip
    out = {}
    cuts = None
    for key, draw in draws:
        fig = plt.figure(figsize=(7, 2.6))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=QUIET_NOTHING_SHOWN)
            display = draw(fig)
        if key == "slices":
            cuts = tuple(display.cut_coords)
        out[key] = png_data_uri(fig)
        display.close()
    if scan is not None:
        fig = plt.figure(figsize=(7, 2.6))
        display = plotting.plot_anat(scan, display_mode="ortho", cut_coords=cuts, draw_cross=False, figure=fig, dim=0)
        out["scan"] = png_data_uri(fig)
        display.close()
    return out


def input_picture(path) -> str:
    """Mid-slices of the scan as stored (before resampling onto the model's grid; shown in RAS),
    cut at the centre of its field of view, as a data URI."""
    import nibabel as nib
    from nilearn import plotting

    from sepclr_med.io.nifti import load_image

    img = nib.as_closest_canonical(load_image(path))
    centre = img.affine @ np.append((np.asarray(img.shape[:3]) - 1) / 2.0, 1.0)
    plt = pyplot()
    fig = plt.figure(figsize=(7, 2.6))
    display = plotting.plot_anat(
        img, display_mode="ortho", cut_coords=tuple(centre[:3]), draw_cross=False, figure=fig, dim=0
    )
    out = png_data_uri(fig)
    display.close()
    return out


def map_sentence(lit: bool, peak: float, display: str | None) -> str:
    """One sentence for a subject: whether its map reaches the calibrated healthy-control level
    (``display``: the threshold's description, None when uncalibrated)."""
    if display is None:
        return "Not calibrated against healthy controls: the strongest 10 % of the map's voxels are coloured."
    reach = "reaches" if lit else "does not reach"
    return f"Threshold: {display}. This map {reach} it (peak {peak:.2f} x the threshold)."


OFFLINE_POLICY = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:\">"
)


def interactive_viewer(
    img,
    scan,
    threshold: float,
    back_page: str,
    calibrated: bool = False,
    warning: str | None = None,
    title: str = "salient deviation map",
    lines: tuple[str, ...] = (),
) -> str:
    """A standalone HTML page with nilearn's interactive viewer (``view_img``) of the map on the
    subject's scan: its scripts and images inlined, and a content policy that forbids any
    network request (nilearn's favicon link is removed).

    The page's title and heading are ``title``; below it, ``warning`` (the training verdict's)
    when there is one, each of ``lines`` (what the subject is, what a colour means) and a link
    back to ``back_page``. Every text is escaped."""
    from nilearn import plotting

    scale = {"vmax": DISPLAY_VMAX} if calibrated else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=QUIET_NOTHING_SHOWN)
        view = plotting.view_img(
            img, bg_img=scan, threshold=threshold, symmetric_cmap=True, black_bg=False, dim=0,
            title="salient deviation map", **scale,
        )  # fmt: skip
    page = re.sub(r'<link rel="icon"[^>]*>', "", view.get_standalone())
    page = re.sub(
        r"<title>.*?</title>", lambda _: f"<title>{html_text.escape(title)}</title>", page, count=1, flags=re.S
    )
    back = html_text.escape(back_page, quote=True)
    header = [f'<h1 style="font-size:1.2em">{html_text.escape(title)}</h1>']
    if warning:
        header.append(
            f'<p class="verdict-warning" style="color:#a00"><strong>WARNING</strong>: {html_text.escape(warning)}</p>'
        )
    header += [f"<p>{html_text.escape(line)}</p>" for line in lines]
    header.append(
        f'<p><a href="{back}">← back to the subject\'s page</a> · click to move the cursor; the colour bar is that '
        "of the page's maps.</p>"
    )
    page = page.replace("<head>", "<head>\n" + OFFLINE_POLICY, 1)
    return page.replace("<body>", "<body>\n" + "\n".join(header), 1)
