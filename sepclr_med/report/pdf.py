"""A one-page PDF per subject for filing, drawn with matplotlib (no browser needed)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from sepclr_med.atomic import atomic_path
from sepclr_med.report.figures import map_sentence


def _image(uri: str):
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


def subject_pdf(s: dict, meta: dict, path: Path) -> Path:
    """Write the subject's page (identification, deviation, overlays, regions, caveat) as PDF."""
    import matplotlib.pyplot as plt  # the session's backend: never switched here (see explain.figures.pyplot)
    from matplotlib.backends.backend_pdf import PdfPages

    fig = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
    text = fig.add_axes((0.06, 0.78, 0.88, 0.2))
    text.axis("off")
    warning = meta.get("verdict_warning")
    lines = (
        (["WARNING: this model may not have learnt a disease pattern; findings may be noise."] if warning else [])
        + [
            f"Subject {s['subject_id']} · group: {s['group']} · training verdict: {meta['verdict_status']}",
            f"Scan: {s['image']}",
            f"Report date: {meta['generated']}",
            f"Model: {meta['run_id']} (sepclr-med {meta['version']})",
            f"Salient deviation {s['deviation']:.2f}: above {s['percentile_controls']:.0f}% of reference "
            f"controls and {s['percentile_patients']:.0f}% of reference patients ({meta['reference_split']}); "
            f"nearest group {s['cluster']}.",
            map_sentence(s["map_lit"], s["map_peak"], meta.get("display")),
        ]
        + [f"Note: {note}" for note in meta["reference_notes"]]
    )
    text.text(0, 1, "\n".join(lines), va="top", fontsize=9, family="DejaVu Sans", wrap=True, parse_math=False)
    for box, key in (
        ((0.06, 0.6, 0.88, 0.18), "deviation_png"),
        ((0.06, 0.42, 0.88, 0.17), "glass_png"),
        ((0.06, 0.25, 0.88, 0.16), "slices_png"),
    ):
        ax = fig.add_axes(box)
        ax.imshow(_image(s[key]))
        ax.axis("off")
    regions = fig.add_axes((0.06, 0.06, 0.88, 0.17))
    regions.axis("off")
    rows = [f"{r['rank']:>2}. {r.get('label', r['name'])}: {r['mean_attribution']:.3g}" for r in s["regions"][:8]]
    caveat = "Research tool, not a diagnosis. " + meta["caveat"]
    regions.text(
        0, 1, "Top regions\n" + "\n".join(rows) + "\n\n" + caveat, va="top", fontsize=8, wrap=True, parse_math=False
    )
    with atomic_path(path) as tmp, PdfPages(tmp) as pdf:
        pdf.savefig(fig)
    plt.close(fig)
    return Path(path)
