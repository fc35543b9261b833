"""`sepclr-med preprocess` (issue 15): raw heads stored as scanners store them come back into
template space; batches resume; failures are listed; the output trains and reports."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

pytest.importorskip("ants")

from sepclr_med.cli.main import app  # noqa: E402
from sepclr_med.registration import RegistrationConfig, Template, register_scan  # noqa: E402
from sepclr_med.simulate.raw_heads import motion_matrix, scanner_head  # noqa: E402

RES = 4.0  # template grid of the accuracy tests (mm)
BATCH_RES = 6.0  # of the batch tests: what they test does not need the finer grid
runner = CliRunner()


def _motion(angles=(8.0, -5.0, 10.0), shift=(6.0, -9.0, 4.0), scales=(1.0, 1.0, 1.0)) -> np.ndarray:
    return motion_matrix(angles, shift, scales)


def _scanner_head(path, motion: np.ndarray, *, skull: bool = False, rng=None, resolution: float = RES) -> None:
    scanner_head(path, motion, resolution=resolution, skull=skull, rng=rng)


def _worst_displacement(estimated: np.ndarray, truth: np.ndarray) -> float:
    """Largest distance (mm) between where the two transforms put the template's brain voxels."""
    t1, mask = Template(RES).images()
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    points = np.c_[ijk, np.ones(len(ijk))] @ t1.affine.T
    return float(np.linalg.norm((points @ estimated.T - points @ truth.T)[:, :3], axis=1).max())


def _rotation_error_degrees(estimated: np.ndarray, truth: np.ndarray) -> float:
    def rotation(m):
        u, _, vt = np.linalg.svd(m[:3, :3])
        return u @ vt

    delta = rotation(estimated) @ rotation(truth).T
    return float(np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))))


@pytest.mark.parametrize(
    "motion",
    [_motion(), _motion(angles=(-6.0, 9.0, -4.0), shift=(-8.0, 5.0, 10.0), scales=(1.08, 0.94, 1.03))],
    ids=["rigid", "affine"],
)
def test_a_moved_head_stored_as_a_scanner_stores_it_comes_back(tmp_path, motion):
    from sepclr_med.io.image_checks import alignment_measures
    from sepclr_med.io.template_space import alignment_errors

    path = tmp_path / "sub-01_T1w.nii.gz"
    _scanner_head(path, motion, rng=np.random.default_rng(0))
    result = register_scan(path, Template(RES), RegistrationConfig(resolution=RES), tmp_path)
    assert _worst_displacement(result.template_to_scan, motion) <= 2.0
    assert _rotation_error_degrees(result.template_to_scan, motion) <= 2.0
    assert result.similarity >= 0.8  # 4.5 mm slices, noise and a bias field: not the template itself
    out = tmp_path / "out.nii.gz"
    nib.save(result.image, str(out))
    assert alignment_errors(alignment_measures(path)) and not alignment_errors(alignment_measures(out))


def test_a_head_with_skull_and_scalp_comes_back_correlated_with_the_template(tmp_path):
    path = tmp_path / "sub-01_T1w.nii.gz"
    _scanner_head(path, _motion(), skull=True, rng=np.random.default_rng(1))
    result = register_scan(path, Template(RES), RegistrationConfig(resolution=RES), tmp_path)
    assert result.similarity >= 0.7
    assert _worst_displacement(result.template_to_scan, _motion()) <= 4.0


def _opens_in_chromium(page) -> None:
    from conftest import headless_chrome

    driver = headless_chrome()
    try:
        driver.get(page.as_uri())
        images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
        assert len(images) == 8 and all(done and width > 0 for done, width in images)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


def _raw_cohort(root, n_per_group: int = 3, broken: bool = False):
    rng = np.random.default_rng(2)
    rows = []
    for i in range(2 * n_per_group):
        motion = _motion(angles=tuple(rng.uniform(-8, 8, 3)), shift=tuple(rng.uniform(-8, 8, 3)))
        path = root / f"scan_{i}.nii.gz"
        _scanner_head(path, motion, rng=rng, resolution=BATCH_RES)
        rows.append({"subject_id": f"s{i}", "image": path.name, "group": ["control", "patient"][i % 2], "age": 40 + i})
    if broken:
        (root / "broken.nii.gz").write_bytes(b"\x1f\x8b not a scan")
        rows.append({"subject_id": "s-broken", "image": "broken.nii.gz", "group": "patient", "age": 50})
    table = pd.DataFrame(rows)
    table.to_csv(root / "raw.csv", index=False)
    return root / "raw.csv"


def test_preprocess_writes_derivatives_resumes_and_lists_failures(tmp_path):
    from sepclr_med.io.reading import read_cohort

    cohort = _raw_cohort(tmp_path, n_per_group=2)
    out = tmp_path / "deriv"
    args = ["preprocess", "--cohort", str(cohort), "--out", str(out), "--voxel-size", str(BATCH_RES)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = pd.read_csv(out / "cohort.csv")
    assert list(table.columns) == ["subject_id", "image", "group", "age"] and len(table) == 4
    assert table["image"][0] == "sub-s0/anat/sub-s0_space-MNI152NLin2009aAsym_desc-preproc_T1w.nii.gz"
    sidecar = out / "sub-s0/anat/sub-s0_space-MNI152NLin2009aAsym_desc-preproc_T1w.json"
    record = json.loads(sidecar.read_text())
    assert record["similarity"] > 0.8 and len(record["input_sha256"]) == 64
    assert (out / "sub-s0/anat/sub-s0_from-T1w_to-MNI152NLin2009aAsym_mode-image_xfm.mat").stat().st_size > 0
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    checked = read_cohort(out / "cohort.csv", check_alignment=True)  # the template-space check passes
    assert len(checked) == 4
    qc = (out / "qc.html").read_text()
    assert "input before registration" in qc and qc.count("data:image/png;base64,") == 8  # before and after
    assert pd.read_csv(out / "alignment.tsv", sep="\t")["aligned"].all()
    _opens_in_chromium(out / "qc.html")

    # killed before s1's sidecar: only s1 is done again, nothing half-written stays
    stamp = sidecar.stat().st_mtime_ns
    (out / "sub-s1/anat/sub-s1_space-MNI152NLin2009aAsym_desc-preproc_T1w.json").unlink()
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "Preprocessed 1 subject(s), 3 already done" in second.output
    assert sidecar.stat().st_mtime_ns == stamp
    assert not [p for p in out.rglob("*") if "sepclr" in p.name and "tmp" in p.name]

    # a broken scan fails alone, listed, exit 1; the others are written
    (tmp_path / "b").mkdir()
    broken = _raw_cohort(tmp_path / "b", n_per_group=1, broken=True)
    third = runner.invoke(
        app, ["preprocess", "--cohort", str(broken), "--out", str(tmp_path / "d2"), "--voxel-size", str(BATCH_RES)]
    )
    assert third.exit_code == 1 and "failed s-broken" in " ".join(third.output.split())
    assert len(pd.read_csv(tmp_path / "d2" / "cohort.csv")) == 2


def test_preprocess_then_train_then_report_end_to_end(tmp_path):
    """Issue 15: the derivatives' cohort.csv is what `train` and `report` take, as it is."""
    cohort = _raw_cohort(tmp_path, n_per_group=4)
    out = tmp_path / "deriv"
    step = runner.invoke(
        app, ["preprocess", "-c", str(cohort), "-o", str(out), "--voxel-size", str(BATCH_RES), "--jobs", "2"]
    )
    assert step.exit_code == 0, step.output
    csv = str(out / "cohort.csv")
    step = runner.invoke(
        app, ["train", "-c", csv, "-o", str(tmp_path / "run"), "--epochs", "2", "--device", "cpu", "--batch-size", "8"]
    )
    assert step.exit_code == 0, step.output
    step = runner.invoke(
        app, ["report", "-r", str(tmp_path / "run"), "-c", csv, "-o", str(tmp_path / "rep"), "--steps", "2", "--no-pdf"]
    )
    assert step.exit_code == 0, step.output
    assert len(list((tmp_path / "rep").glob("subject-*.html"))) == 16  # a page and a viewer per subject
    assert len(list((tmp_path / "rep").glob("subject-*-viewer.html"))) == 8


@pytest.mark.parametrize("transform", ["affine", "syn"])
def test_grey_matter_maps_and_their_modulation(tmp_path, transform):
    """--tissue gm: a probability map like the template's GM; with syn, modulated by the volume
    change, so a head 10% larger along every axis carries ~1.33x the grey matter."""
    from sepclr_med.registration.tissue import tissue_priors

    template, config = Template(RES), RegistrationConfig(resolution=RES, tissue="gm", transform=transform)
    totals = []
    for scale in (1.0, 1.1):
        path = tmp_path / f"sub-{int(scale * 10)}_T1w.nii.gz"
        _scanner_head(path, _motion(scales=(scale,) * 3), rng=np.random.default_rng(3))
        work = tmp_path / f"w{scale}"
        work.mkdir()
        result = register_scan(path, template, config, work)
        gm = np.asarray(result.grey_matter.dataobj)
        brain = np.asarray(result.brain_mask.dataobj) > 0
        assert gm.min() >= 0 and (gm[~brain] == 0).all()
        assert np.corrcoef(gm[brain], tissue_priors(template)[1][brain])[0, 1] >= 0.8
        totals.append(float(gm.sum()))
    ratio = totals[1] / totals[0]
    if transform == "syn":
        assert ratio == pytest.approx(1.1**3, rel=0.08)
    else:
        assert gm.max() <= 1 and ratio == pytest.approx(1.0, rel=0.05)  # probabilities, not modulated


def test_killed_mid_batch_then_rerun_redoes_only_the_unfinished(tmp_path):
    """A real SIGKILL while subjects are being registered: the rerun keeps every finished subject
    (same file, untouched) and leaves no temporary file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cohort = _raw_cohort(tmp_path, n_per_group=3)
    out = tmp_path / "deriv"
    cmd = [sys.executable, "-m", "sepclr_med.cli.main", "preprocess", "-c", str(cohort), "-o", str(out)]
    cmd += ["--voxel-size", str(BATCH_RES)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    sidecars = lambda: list(out.glob("sub-*/anat/*_T1w.json"))  # noqa: E731  (no descent into work folders)
    while time.monotonic() < deadline and len(sidecars()) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in sidecars()}
    assert 2 <= len(finished) < 6, "the kill came too late to test anything"
    result = runner.invoke(app, cmd[3:])
    assert result.exit_code == 0, result.output
    assert f"{6 - len(finished)} subject(s), {len(finished)} already done" in " ".join(result.output.split())
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert len(pd.read_csv(out / "cohort.csv")) == 6
    assert not [p for p in out.rglob("*") if ".sepclr" in p.name], "temporary files left behind"


def test_a_raw_bids_dataset_keeps_its_entities(tmp_path):
    root = tmp_path / "bids"
    for i in range(4):
        folder = root / f"sub-{i:02d}" / "ses-1" / "anat"
        folder.mkdir(parents=True)
        _scanner_head(
            folder / f"sub-{i:02d}_ses-1_T1w.nii.gz", _motion(shift=(i, -i, 2.0)), rng=np.random.default_rng(i)
        )
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(4)], "group": ["control"] * 2 + ["patient"] * 2}
    ).to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.9.0"}')
    out = root / "derivatives" / "sepclr-med"
    result = runner.invoke(app, ["preprocess", "-c", str(root), "-o", str(out), "--voxel-size", str(BATCH_RES)])
    assert result.exit_code == 0, result.output
    images = pd.read_csv(out / "cohort.csv")["image"].tolist()
    assert images[0] == "sub-00/ses-1/anat/sub-00_ses-1_space-MNI152NLin2009aAsym_desc-preproc_T1w.nii.gz"


def test_an_output_that_fails_the_template_check_is_a_listed_failure(tmp_path, monkeypatch):
    """Fail loudly: a scan registered wrongly is not handed to `train` (exit 1, out of cohort.csv,
    first on the QC page with its problem)."""
    from sepclr_med.io import template_space

    real = template_space.alignment_errors
    monkeypatch.setattr(
        template_space,
        "alignment_errors",
        lambda m: ["rotated 30° away from MNI152 (test)"] if m is bad_measures[0] else real(m),
    )
    from sepclr_med.io import image_checks

    real_measures = image_checks.alignment_measures
    bad_measures: list = [None]

    def measures(path):
        found = real_measures(path)
        if "sub-s1_" in str(path):
            bad_measures[0] = found
        return found

    monkeypatch.setattr(image_checks, "alignment_measures", measures)
    cohort = _raw_cohort(tmp_path, n_per_group=1)
    out = tmp_path / "deriv"
    result = runner.invoke(app, ["preprocess", "-c", str(cohort), "-o", str(out), "--voxel-size", str(BATCH_RES)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 1 and "failed s1: registered, but the output fails the template-space check" in flat
    assert pd.read_csv(out / "cohort.csv")["subject_id"].tolist() == ["s0"]
    assert pd.read_csv(out / "alignment.tsv", sep="\t")["subject_id"].tolist() == ["s1", "s0"]  # worst first
