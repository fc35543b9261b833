"""sepclr-med export (issue 17): one shareable model file, no per-subject row, same report numbers."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from sepclr_med.cli.main import app


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run on 14 + 14 subjects (enough training controls for two composites), its export, a batch."""
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.report.export import export_model
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training.loop import train

    root = tmp_path_factory.mktemp("export")
    recipe = load_recipe("schizophrenia").replace(n_controls=14, n_patients=14, resolution_mm=8.0, seed=5)
    cohort = simulate_cohort(recipe, root / "cohort")
    run = train(
        read_cohort(cohort.cohort_csv),
        root / "run",
        tiny_config(**{"optim.epochs": 1, "val_fraction": 0.2, "cache_dir": str(root / "cache")}),
    )
    result = export_model(Run(run), root / "model.sepclr")
    table = pd.read_csv(cohort.cohort_csv)
    table["image"] = [str(cohort.root / p) for p in table["image"]]
    batch = root / "batch.csv"
    table.groupby("group").head(2).to_csv(batch, index=False)
    return root, run, root / "model.sepclr", table, batch, result


def _member_bytes(path) -> dict[str, bytes]:
    """Every member decompressed; each array of the .npz as its raw bytes and its text."""
    import gzip

    out = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if name.endswith(".npz"):
                with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                    for key in arrays.files:
                        value = arrays[key]
                        out[f"{name}:{key}"] = value.tobytes() + " ".join(map(str, value.ravel()[:1000])).encode()
            elif name.endswith(".gz"):
                out[name] = gzip.decompress(data)
            else:
                out[name] = data
    return out


def test_the_exported_model_holds_no_subject_id_path_or_score(exported):
    root, _, model, table, _, _ = exported
    members = _member_bytes(model)
    assert {"model.pt", "config.toml", "MODEL_CARD.md", "report_reference.npz:composites"} <= {
        m.split(":")[0] if m.startswith("model.pt") else m for m in members
    }
    needles = {*table["subject_id"], *table["image"], str(root), "panss"}
    found = {n for n in needles for data in members.values() if n.encode() in data}
    assert found == set()
    scores = np.round(table[["panss_positive", "panss_negative"]].stack().to_numpy(float), 3)
    with zipfile.ZipFile(model) as archive, np.load(io.BytesIO(archive.read("report_reference.npz"))) as arrays:
        numeric = [arrays[k] for k in arrays.files if arrays[k].dtype.kind == "f" and arrays[k].size >= 5]
    assert all(np.isin(scores, np.round(a, 3)).mean() < 0.5 for a in numeric)  # no array holds the scores


def test_the_card_has_yaml_metadata_and_hashes(exported):
    import hashlib

    import yaml

    _, _, model, _, _, _ = exported
    with zipfile.ZipFile(model) as archive:
        card = archive.read("MODEL_CARD.md").decode()
        weights = archive.read("model.pt")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["training_cohort"]["by_group_and_split"] == {
        "control/train": 11, "control/val": 3, "patient/train": 11, "patient/val": 3,
    }  # fmt: skip
    assert front["training_cohort"]["subjects"] == 28 and "Not validated for diagnosis" in front["intended_use"]
    assert front["sha256"]["model.pt"] == hashlib.sha256(weights).hexdigest()
    assert front["versions"]["torch"] and "expected gradients over 2 control composites" in str(front)


def test_reports_from_the_export_give_the_run_s_numbers(exported):
    from sepclr_med.exported import ExportedModel
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    root, run, model, _, batch, _ = exported
    make_reports(Run(run), batch, root / "r_run", pdf=False, viewer=False)
    make_reports(ExportedModel(model), batch, root / "r_file", pdf=False, viewer=False)
    a, b = pd.read_csv(root / "r_run" / "summary.csv"), pd.read_csv(root / "r_file" / "summary.csv")
    assert len(a) == 4 and list(a["subject_id"]) == list(b["subject_id"])
    for column in ("deviation", "percentile_controls", "percentile_patients", "map_peak"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-6)
    assert list(a["cluster"]) == list(b["cluster"]) and list(a["top_region"]) == list(b["top_region"])
    page = (root / "r_file" / b["page"][0]).read_text()
    assert "expected gradients over 2 control composites" in page and "held-out control" in page


def test_reporting_an_export_with_another_budget_says_the_stated_rate_does_not_hold(exported):
    root, _, model, _, batch, _ = exported
    out = root / "r_steps"
    args = ["report", "--run", str(model), "--cohort", str(batch), "--out", str(out), "--steps", "4", "--no-pdf"]
    result = CliRunner().invoke(app, [*args, "--no-viewer"])
    assert result.exit_code == 0, result.output
    said = "calibrated with 16 attribution steps and these maps use 4"
    assert said in " ".join(result.output.split())  # the console (wrapped by Rich)
    page = next(out.glob("subject-*.html")).read_text()
    assert said in page and said in (out / "index.html").read_text() and "4 samples" in page


def test_embed_and_the_estimator_take_the_exported_file(exported):
    from sepclr_med.estimator import SepCLR

    root, run, model, _, batch, _ = exported
    np.testing.assert_allclose(SepCLR.load(model).transform(batch), SepCLR.load(run).transform(batch), atol=1e-6)
    out = root / "latents.csv"
    result = CliRunner().invoke(app, ["embed", "--run", str(model), "--cohort", str(batch), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 4


def test_export_cli_refuses_an_existing_file_and_a_damaged_file_is_refused(exported):
    root, run, model, _, batch, _ = exported
    result = CliRunner().invoke(app, ["export", "--run", str(run), "--out", str(model)])
    assert result.exit_code != 0 and "--overwrite" in result.output
    damaged = root / "damaged.sepclr"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-1] + bytes([data[-1] ^ 1]) if name == "config.toml" else data)
    arguments = ["embed", "--run", str(damaged), "--cohort", str(batch), "--out", str(root / "x.csv")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code != 0 and "does not match its digest" in result.output


def test_a_run_whose_training_scans_are_gone_cannot_report_and_says_to_export(exported, tmp_path):
    import shutil

    from sepclr_med.errors import SepclrError
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    root, run, _, table, batch, _ = exported
    moved = tmp_path / "run"
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("report_cache"))  # no reference kept yet
    inputs = pd.read_csv(moved / "inputs.tsv", sep="\t", dtype=str, keep_default_na=False)
    inputs["image"] = [str(tmp_path / "gone" / f"{s}.nii.gz") for s in inputs["subject_id"]]
    inputs.to_csv(moved / "inputs.tsv", sep="\t", index=False)
    with pytest.raises(SepclrError, match="sepclr-med export"):
        make_reports(Run(moved), batch, tmp_path / "out", pdf=False)


def test_the_controls_mean_and_the_composites_leave_no_single_scan_to_recover(exported):
    import nibabel as nib

    _, run, model, _, _, _ = exported
    with zipfile.ZipFile(model) as archive:
        arrays = np.load(io.BytesIO(archive.read("report_reference.npz")))
        composites, sizes = arrays["composites"].astype(np.float64), arrays["composite_sizes"]
        mean = np.asarray(nib.Nifti1Image.from_bytes(
            __import__("gzip").decompress(archive.read("reference_control_mean.nii.gz"))
        ).dataobj, dtype=np.float64)  # fmt: skip
    assert sizes.tolist() == [6, 5] and composites.shape[0] == 2  # all 11 training controls, in two groups
    residual = sizes.sum() * mean - np.tensordot(sizes, composites, axes=1)
    assert np.abs(residual).max() < 0.05 * np.abs(mean).max()  # rounding only: nobody left over


@pytest.mark.parametrize(
    "damage, message",
    [
        ("extra", "unexpected members"),
        ("manifest_json", "manifest.json cannot be read"),
        ("drop_member", "members are missing"),
    ],
)
def test_a_tampered_model_file_is_one_clear_refusal(exported, tmp_path, damage, message):
    import json

    from sepclr_med.errors import SepclrError
    from sepclr_med.exported import ExportedModel

    _, _, model, _, _, _ = exported
    bad = tmp_path / "bad.sepclr"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if damage == "manifest_json" and name == "manifest.json":
                data = b"{not json"
            if damage == "drop_member" and name == "verdict.json":
                continue
            if damage == "drop_member" and name == "manifest.json":
                manifest = json.loads(data)
                del manifest["members"]["verdict.json"]
                data = json.dumps(manifest).encode()
            dst.writestr(name, data)
        if damage == "extra":
            dst.writestr("../evil.py", b"print('x')")
    with pytest.raises(SepclrError, match=message) as caught:
        ExportedModel(bad)
    assert str(bad) in str(caught.value)


def test_a_run_directory_keeps_its_report_reference_for_the_next_batch(exported, tmp_path):
    import shutil

    from sepclr_med.report.batch import REFERENCE_CACHE, make_reports
    from sepclr_med.run import Run

    _, run, _, _, batch, _ = exported
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(REFERENCE_CACHE))
    make_reports(Run(copy), batch, tmp_path / "first", pdf=False, viewer=False, n_steps=4)
    kept = sorted((copy / REFERENCE_CACHE).glob("*.npz"))
    assert len(kept) == 1 and "-4-cpu-" in kept[0].name
    inputs = pd.read_csv(copy / "inputs.tsv", sep="\t", dtype=str, keep_default_na=False)
    inputs["image"] = [str(tmp_path / "gone" / f"{s}.nii.gz") for s in inputs["subject_id"]]
    inputs.to_csv(copy / "inputs.tsv", sep="\t", index=False)  # the training scans are gone now
    make_reports(Run(copy), batch, tmp_path / "second", pdf=False, viewer=False, n_steps=4)  # read, not recomputed
    a, b = (pd.read_csv(tmp_path / d / "summary.csv") for d in ("first", "second"))
    for column in ("deviation", "percentile_controls", "map_peak"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-6)
    assert len(sorted((copy / REFERENCE_CACHE).glob("*.npz"))) == 1


def test_an_old_a_truncated_and_a_corrupted_model_file_are_refused_with_what_to_do(exported, tmp_path):
    import json

    from sepclr_med.errors import SepclrError
    from sepclr_med.exported import ExportedModel

    _, _, model, _, _, _ = exported
    old, stored = tmp_path / "old.sepclr", tmp_path / "stored.sepclr"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(old, "w") as a, zipfile.ZipFile(stored, "w") as b:
        for name in src.namelist():
            data = src.read(name)
            b.writestr(name, data, compress_type=zipfile.ZIP_STORED)
            if name == "manifest.json":
                data = json.dumps({**json.loads(data), "format_version": 1}).encode()
            a.writestr(name, data)
    with pytest.raises(SepclrError, match="earlier sepclr-med .* export the run again"):
        ExportedModel(old)
    truncated = tmp_path / "truncated.sepclr"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(SepclrError, match="damaged or not a model file"):
        ExportedModel(truncated)
    with zipfile.ZipFile(stored) as archive:  # flip one byte inside the stored weights: a bad CRC
        info = archive.getinfo("model.pt")
    raw = bytearray(stored.read_bytes())
    header = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[header + info.file_size // 2] ^= 0xFF
    stored.write_bytes(bytes(raw))
    with pytest.raises(SepclrError, match="model.pt cannot be read: the file is damaged"):
        ExportedModel(stored)


def test_a_copy_of_an_exported_model_has_its_own_folder(exported):
    import copy
    import gc

    from sepclr_med.exported import ExportedModel

    _, _, model, _, _, _ = exported
    first = ExportedModel(model)
    second = copy.deepcopy(first)
    assert second.path != first.path and (second.path / "model.pt").is_file()
    del first
    gc.collect()
    assert (second.path / "model.pt").is_file()
    second.load_model()


def test_a_mask_file_travels_with_a_clean_header(tmp_path):
    import gzip

    import nibabel as nib

    from sepclr_med.report.export import _clean_nifti

    img = nib.Nifti1Image(np.ones((7, 8, 9), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header["descrip"] = b"mask of Jane Doe, sub-0042"
    img.header["aux_file"] = b"/home/lab/jane"
    path = tmp_path / "mask.nii"
    nib.save(img, path)
    cleaned = _clean_nifti(path)
    raw = gzip.decompress(cleaned)
    assert b"Jane" not in raw and b"sub-0042" not in raw and b"/home/lab" not in raw
    back = nib.Nifti1Image.from_bytes(raw)
    assert np.array_equal(np.asarray(back.dataobj), np.ones((7, 8, 9))) and np.allclose(back.affine, img.affine)


def test_exporting_a_run_with_fewer_than_five_training_controls_is_refused(exported, tmp_path):
    import shutil

    from sepclr_med.errors import SepclrError
    from sepclr_med.report.export import export_model
    from sepclr_med.run import Run

    _, run, _, _, _, _ = exported
    few = tmp_path / "run"
    shutil.copytree(run, few)
    split = pd.read_csv(few / "split.csv")
    controls = split.index[(split["group"] == "control") & (split["split"] == "train")]
    split.loc[controls[4:], "split"] = "val"  # 4 training controls left
    split.to_csv(few / "split.csv", index=False)
    with pytest.raises(SepclrError, match="fewer than 5 people"):
        export_model(Run(few), tmp_path / "m.sepclr")
    assert not (tmp_path / "m.sepclr").exists()
