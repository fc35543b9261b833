"""Files of a run directory that training writes and every later stage reads back: library
versions, digests, the model card, ``metrics.jsonl`` and ``verdict.json``
(the layout: :mod:`sepclr_med.run`)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

LIBRARIES = ("sepclr-med", "torch", "monai", "nibabel", "nilearn", "numpy", "scipy", "pandas", "scikit-learn")


def sha256(path: str | os.PathLike) -> str:
    """Hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on, plus Python."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """``metrics.jsonl``: one record per epoch (empty before the first epoch)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_verdict(run_dir: str | os.PathLike) -> dict:
    """``verdict.json``, or an ``unchecked`` verdict saying why there is none."""
    path = Path(run_dir) / "verdict.json"
    if not path.is_file():
        return {
            "status": "unchecked",
            "message": "this run has no verdict.json (trained by an older "
            "version or unfinished): whether its salient space separates patients from controls "
            "was NOT checked",
            "advice": "retrain with this version",
        }
    return json.loads(path.read_text(encoding="utf-8"))


PERSONAL_DATA = (
    "`cohort.csv` (image paths, and age, sex, site and clinical scores where the table has them), "
    "`inputs.tsv` (the same values and each image's SHA-256), `split.csv` and `alignment.tsv` "
    "(subject ids, groups, template-space measures), `reference_latents.csv` (each training "
    "subject's latent reps) and `val_salient_norms.npz` (validation subjects' salient norms)."
)


def model_card(
    config,
    cohort,
    split_counts: dict,
    metrics: list[dict],
    versions: dict,
    verdict: dict | None = None,
    unaligned: list[str] | None = None,
) -> str:
    """A short Markdown model card; the training verdict first, then scans that were not in
    template space (``unaligned``: subject ids, accepted with ``allow_unaligned``).
    (Long because it is the card's text, section by section.)
    """
    last = metrics[-1] if metrics else {}
    verdict = verdict or {"status": "unchecked", "message": "no verdict", "advice": ""}
    status = (
        "**Verdict: salient space separated.** "
        if verdict["status"] == "separated"
        else f"**WARNING — verdict: {verdict['status']}.** "
    )
    advice = f" What to try: {verdict['advice']}." if verdict.get("advice") else ""
    lines = [
        "# sepclr-med model card",
        "",
        status + verdict["message"][0].upper() + verdict["message"][1:] + "." + advice,
        *(
            [
                f"**Cohort warnings** ({len(cohort.warnings)}): "
                + "; ".join(str(w) for w in cohort.warnings[:10])
                + (" ..." if len(cohort.warnings) > 10 else ""),
                "",
            ]
            if cohort.warnings
            else []
        ),
        *(
            [
                f"**WARNING — {len(unaligned)} scan(s) not in MNI152 template space**, trained on anyway "
                f"(`allow_unaligned`): {', '.join(unaligned[:10])}{' ...' if len(unaligned) > 10 else ''}; "
                "their figures are in `alignment.tsv`.",
                "",
            ]
            if unaligned
            else []
        ),
        f"**Kept weights**: epoch {verdict.get('epoch')} of {config.optim.epochs} (`keep = {config.keep}`: "
        + (
            "highest 3-epoch mean validation salient AUC in the second half of training"
            if config.keep == "best-val"
            else "the last epoch"
        )
        + "); `checkpoints/last.pt` resumes.",
        "",
        "**Model**: SepCLR (Louiset et al., ICLR 2024), two independent 3D encoders "
        f"(`{config.model.backbone}`), common reps of size {config.model.common_dim}, salient reps of "
        f"size {config.model.salient_dim}, projection heads Linear-BatchNorm-ReLU-Linear.",
        f"**Objective**: L_C + {config.loss.beta_salient:g} L_S + {config.loss.beta_infoless:g} L_reg "
        f"+ {config.loss.lambda_jem:g} L_JEM"
        + (
            f" + {config.loss.lambda_independence:g} L_dep (one-sided dCor² leakage penalty, sepclr-med)"
            if config.loss.lambda_independence > 0
            else ""
        )
        + (f" + {config.loss.lambda_adversary:g} L_adv" if config.loss.lambda_adversary > 0 else "")
        + (" (the paper's objective)" if config.loss.lambda_independence == config.loss.lambda_adversary == 0 else "")
        + ".",
        f"**Training data**: `{cohort.source.name}`, {len(cohort)} subjects "
        f"({int((~cohort.is_target).sum())} {cohort.control_label} = background, "
        f"{int(cohort.is_target.sum())} {cohort.patient_label} = target); split {split_counts}.",
        f"**Input**: volumes resampled to grid {tuple(config.preprocess.grid_shape)} "
        f"(voxel {config.preprocess.voxel_size or 'as the cohort'}), intensity `{config.preprocess.intensity}` "
        f"(scale {config.preprocess.scale}).",
        f"**Optimisation**: Adam lr {config.optim.lr:g}, {config.optim.epochs} epochs, batch "
        f"{config.optim.batch_size}, seed {config.seed}.",
        "**Last epoch**: "
        + ", ".join(
            f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float) and k.startswith(("train_", "val_"))
        ),
        "",
        "**Use**: `sepclr-med embed --run RUN --cohort FILE --out latents.csv` gives common and salient "
        "reps for any cohort on the same kind of images; the run's own preprocessing is applied.",
        "**Limits**: research software, not a medical device. Trained on the cohort above only; "
        "salient reps are meaningful relative to this run's controls.",
        "**Personal data in this folder**: " + PERSONAL_DATA + " Share the folder only where the "
        "training subjects' data may go; `model.pt`, `config.toml`, `versions.json`, `metrics.jsonl`, "
        "`tensorboard/`, `mlflow.db` (with `--tracking mlflow`: the same figures, the configuration and this "
        "folder's path), `report_cache/` (written by `report`: the reference an exported model holds) and "
        "`reference_control_mean.nii.gz` hold no subject row (the last is an image "
        "averaged over the training controls). To share the model, share the file "
        "`sepclr-med export --run THIS_FOLDER --out model.sepclr` writes: no per-subject row, and `embed` and "
        "`report` take it in place of the folder.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    return "\n".join(lines) + "\n"
