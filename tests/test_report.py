"""Batch reports: pages for every subject, failures listed, nothing injected, opens in Chromium."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import headless_chrome, tiny_config
from sepclr_med.cli.main import app

XSS_ID = "<script>alert('id')</script>"
XSS_NOTE = '"><img onerror=alert(1) src=x>'


@pytest.fixture(scope="module")
def batch(tiny_cohort, tmp_path_factory):
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    root = tmp_path_factory.mktemp("report")
    run = train(read_cohort(tiny_cohort.cohort_csv), root / "run", tiny_config(**{"optim.epochs": 1}))
    table = pd.read_csv(tiny_cohort.cohort_csv)
    table["image"] = [str(tiny_cohort.root / p) for p in table["image"]]
    patients = table[table["group"] == "patient"].head(3).copy()
    patients.iloc[0, patients.columns.get_loc("subject_id")] = XSS_ID
    patients["note"] = ["plain", XSS_NOTE, "plain"]
    broken = patients.iloc[[2]].assign(subject_id="sub-broken", image=str(root / "missing.nii.gz"))
    path = root / "batch.csv"
    pd.concat([patients, broken]).to_csv(path, index=False)
    return root, run, path


def test_reports_every_subject_and_lists_failures(batch):
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    root, run, path = batch
    out = root / "out"
    result = make_reports(Run(run), path, out, include=("note",), n_steps=4)
    assert len(result["rows"]) == 3
    assert [f["subject_id"] for f in result["failures"]] == ["sub-broken"]
    assert "not found" in result["failures"][0]["error"]
    pages = sorted(p for p in out.glob("subject-*.html") if not p.name.endswith("-viewer.html"))
    assert len(pages) == 3 and len(sorted(out.glob("subject-*.pdf"))) == 3
    assert len(sorted(out.glob("subject-*-viewer.html"))) == 3
    assert all(p.read_bytes().startswith(b"%PDF") for p in out.glob("*.pdf"))
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["status"]) == {"ok", "failed: image file not found: " + str(root / "missing.nii.gz")}
    deviations = [r["deviation"] for r in result["rows"]]
    assert deviations == sorted(deviations, reverse=True)
    index = (out / "index.html").read_text()
    assert "<script>alert" not in index and "&lt;script&gt;alert" in index
    for page in pages:
        html = page.read_text()
        assert "<script" not in html  # subject pages run no script at all
        assert "<img onerror" not in html
        assert "not a diagnosis" in html and "data:image/png;base64," in html
        assert "the subject's scan as the model saw it" in html and html.count("data:image/png;base64,") >= 6
        assert "mid-slices of the input scan as stored" in html
    assert any("&#34;&gt;&lt;img onerror=alert(1) src=x&gt;" in p.read_text() for p in pages)
    # a tiny run: percentiles among trained-on subjects, and maps with another budget than calibrated
    assert any("percentiles are among all the run's subjects" in n for n in result["notes"])
    assert not any("attribution steps" in n for n in result["notes"])  # a run directory calibrates at --steps
    assert (
        "percentiles are among all the run&#39;s subjects" in index and "4 steps" in pages[0].read_text()
    )  # IG: a tiny run
    for viewer in sorted(out.glob("subject-*-viewer.html")):
        html = viewer.read_text()
        title = html.split("<title>", 1)[1].split("</title>", 1)[0]
        assert title.startswith("Subject ") and "Nilearn" not in title and "<script>alert" not in title
        assert "Group: patient" in html and ("This map reaches it" in html or "This map does not reach it" in html)


def test_report_cli_exits_non_zero_when_a_subject_fails(batch):
    root, run, path = batch
    result = CliRunner().invoke(
        app,
        ["report", "--run", str(run), "--cohort", str(path), "--out", str(root / "cli"), "--steps", "2", "--no-pdf"],
    )
    assert result.exit_code == 1
    assert "sub-broken" in result.output and (root / "cli" / "index.html").is_file()


def test_pages_open_in_headless_chromium_without_errors(batch, tmp_path):
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    root, run, path = batch
    out = root / "browser"
    make_reports(Run(run), path, out, n_steps=2, pdf=False)
    subject = sorted(p.name for p in out.glob("subject-*.html") if not p.name.endswith("-viewer.html"))[0]
    driver = headless_chrome()
    try:
        for page in ("index.html", subject):
            driver.get((out / page).as_uri())
            images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
            assert all(done and width > 0 for done, width in images)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
            assert _network_requests(driver) == []
            status = driver.find_element("css selector", ".verdict-status").text
            assert status in ("separated", "not separated", "unchecked", "collapsed"), status  # visible verdict
            shot = _artefacts(tmp_path) / f"{page}.png"
            driver.save_screenshot(str(shot))
            assert shot.stat().st_size > 1000
        assert driver.find_element("css selector", ".group").text == "patient"  # the group is visible
        viewer = driver.find_element("css selector", "a.viewer").get_attribute("href")
        _viewer_works_offline(driver, out, viewer, tmp_path)
        driver.get((out / "index.html").as_uri())
        first = lambda: driver.execute_script("return document.querySelector('#subjects tbody tr td').textContent")  # noqa: E731
        before = first()
        driver.execute_script("document.querySelectorAll('th.sortable')[2].click()")  # sort by deviation
        after_asc = first()
        assert before != after_asc or len(driver.find_elements("css selector", "#subjects tbody tr")) == 1
    finally:
        driver.quit()


def _network_requests(driver) -> list[str]:
    """Resources the page loaded from anywhere but itself (Resource Timing)."""
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name);")
    return [r for r in resources if not r.startswith(("data:", "blob:", "file:"))]


def _artefacts(tmp_path):
    """Where screenshots are kept: $SEPCLR_TEST_ARTEFACTS when set (CI can keep it), else the test's tmp folder."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("SEPCLR_TEST_ARTEFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _viewer_works_offline(driver, out, href, tmp_path) -> None:
    """The viewer page loads with no console error and no network request; a click moves its cursor."""
    import time

    driver.get(href)
    time.sleep(1.0)  # brainsprite draws once its inlined sprite images have decoded
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert _network_requests(driver) == []
    canvas = driver.find_element("css selector", "canvas")
    assert canvas.size["width"] > 100 and canvas.size["height"] > 50
    draw = "return arguments[0].toDataURL();"
    before = driver.execute_script(draw, canvas)
    assert len(before) > 5000  # drawn, not blank
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(canvas, -canvas.size["width"] // 3, 10).click().perform()
    time.sleep(0.3)
    assert driver.execute_script(draw, canvas) != before  # the slices followed the click
    driver.save_screenshot(str(_artefacts(tmp_path) / "viewer.png"))


def test_reports_hold_a_bounded_chunk_of_subjects_in_memory(batch, monkeypatch):
    import sepclr_med.data
    from sepclr_med.report import batch as batch_module
    from sepclr_med.run import Run

    root, run, path = batch
    import shutil

    shutil.rmtree(run / batch_module.REFERENCE_CACHE, ignore_errors=True)  # an earlier test's batch kept one
    sizes, original = [], sepclr_med.data.cached_dataset

    def recording(records, *args, **kwargs):
        sizes.append(len(records))
        return original(records, *args, **kwargs)

    monkeypatch.setattr(batch_module, "REPORT_CHUNK", 2)
    monkeypatch.setattr(sepclr_med.data, "cached_dataset", recording)
    result = batch_module.make_reports(Run(run), path, root / "chunks", n_steps=2, pdf=False)
    # the reference reads the run's 6 training controls (composites) and 2 held-out ones (calibration) first
    assert len(result["rows"]) == 3 and sizes == [6, 2, 2, 1]


def test_the_reference_follows_the_estimator_contract():
    from sklearn.base import clone

    from sepclr_med.report.reference import Reference

    rng = np.random.default_rng(0)
    n = 20
    latents = pd.DataFrame(rng.normal(size=(2 * n, 3)), columns=[f"salient_{i}" for i in range(3)])
    latents.loc[n:, "salient_0"] += 3.0  # the patients deviate along one axis
    latents.insert(0, "group", ["control"] * n + ["patient"] * n)
    latents.insert(1, "split", ["train", "val"] * n)
    reference = Reference(random_state=3)
    assert vars(reference) == {"patient_label": "patient", "random_state": 3}  # parameters only
    assert reference.fit(latents) is reference and reference.reference_split_ == "validation"
    placed = reference.place(latents.filter(like="salient_").to_numpy()[[0, n]])
    assert placed["deviation"][1] > placed["deviation"][0]  # a patient lies farther than a control
    assert placed["percentile_controls"][1] > 90
    assert vars(clone(reference)) == vars(Reference(random_state=3))


def test_a_bug_stops_the_batch_and_a_subjects_bad_data_is_listed(batch, monkeypatch, tmp_path):
    """Issue 14: the per-subject catch takes data errors only; a bug is not a subject's failure."""
    from sepclr_med.report import batch as batch_module
    from sepclr_med.report import figures
    from sepclr_med.run import Run

    root, run, path = batch
    real = figures.brain_overlays
    calls = {"n": 0}

    def bad_second_page(img, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("values that are not a scan")
        return real(img, *args, **kwargs)

    monkeypatch.setattr(figures, "brain_overlays", bad_second_page)
    result = batch_module.make_reports(Run(run), path, tmp_path / "data", n_steps=2, pdf=False)
    assert len(result["rows"]) == 2
    assert [f["error"] for f in result["failures"]][-1] == "ValueError: values that are not a scan"

    def bug(*args, **kwargs):
        raise TypeError("a bug in the page code")

    monkeypatch.setattr(figures, "brain_overlays", bug)
    with pytest.raises(TypeError, match="a bug in the page code"):
        batch_module.make_reports(Run(run), path, tmp_path / "bug", n_steps=2, pdf=False)
    wrapped = RuntimeError("applying transform LoadImaged")
    wrapped.__cause__ = EOFError("compressed file ended")
    from sepclr_med.errors import is_data_error

    assert is_data_error(wrapped) and not is_data_error(RuntimeError("CUDA"))


def test_report_cli_takes_the_atlas_and_refuses_a_written_folder(batch):
    root, run, path = batch
    out = root / "aal3"
    args = ["report", "--run", str(run), "--cohort", str(path), "--out", str(out), "--steps", "2", "--no-pdf"]
    CliRunner().invoke(app, [*args, "--atlas", "AAL3"])
    pages = " ".join(p.read_text() for p in out.glob("subject-*.html"))
    assert pages and "AAL3" in (out / "summary.csv").read_text() + pages
    summary = pd.read_csv(out / "summary.csv")
    groups = summary.loc[summary["status"] == "ok", "group"]
    assert set(groups) <= {"control", "patient", "not given"} and len(groups)
    index = (out / "index.html").read_text()
    assert '<th class="sortable" data-type="text">Group</th>' in index and "training verdict" in index
    assert all(f'<td class="group">{g}</td>' in pages for g in set(groups))
    assert "95% interval" in pages and "Small reference:" in pages  # a tiny run's reference is small
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "pass --overwrite" in again.output


def test_percentile_interval_follows_the_reference_size():
    from sepclr_med.report.reference import percentile_interval

    reference = np.arange(9.0)  # 9 controls
    low, high = percentile_interval(reference, np.array([100.0, -1.0, 4.0]))
    # above all 9: Beta(10, 1), whose quantiles are q ** (1 / 10)
    assert low[0] == pytest.approx(100 * 0.025**0.1) and high[0] == pytest.approx(100 * 0.975**0.1)
    assert 0 < low[1] < 1 and 0 < high[1] < 40  # below all 9: Beta(1, 10)
    wide = high[2] - low[2]
    big_low, big_high = percentile_interval(np.arange(900.0), np.array([449.5]))
    assert big_high[0] - big_low[0] < wide / 5  # 100x the reference: ~10x narrower


def test_region_codes_read_as_clinicians_name_them():
    from sepclr_med.io.region_names import readable_region_name as readable

    assert readable("Hippocampus_L") == "left hippocampus"
    assert readable("Frontal_Sup_2_L") == "left superior frontal gyrus (2)"
    assert readable("Frontal_Inf_Tri_R") == "right inferior frontal gyrus, pars triangularis"
    assert readable("Cerebelum_7b_R") == "right cerebellum lobule 7b"
    assert readable("Vermis_1_2") == "vermis lobules 1-2"
    assert readable("Frontal_R") == "right frontal gyrus" and readable("Mystery_Area") == "Mystery area"


def test_the_cohorts_warnings_reach_the_index(batch):
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    root, run, path = batch
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    extra = table.iloc[[0]].assign(subject_id="sub-noimage", image="")
    with_gap = root / "with_gap.csv"
    pd.concat([table, extra]).to_csv(with_gap, index=False)
    result = make_reports(Run(run), with_gap, root / "gap", n_steps=2, pdf=False, read_options={"skip_missing": True})
    assert result["cohort_warnings"] and "(no image)" in " ".join(result["cohort_warnings"])
    index = (root / "gap" / "index.html").read_text()
    assert "warning(s) about the" in index and "(no image)" in index


def test_the_display_threshold_lights_up_held_out_null_maps_at_the_stated_rate():
    from sepclr_med.report.display_threshold import DisplayThreshold

    rng = np.random.default_rng(0)
    null = lambda n: rng.normal(size=(n, 7, 8, 9)).astype(np.float32)  # noqa: E731
    display = DisplayThreshold(rate=0.05, fwhm_voxels=2.0).fit(null(39))
    assert display.n_controls_ == 39 and display.bound_ == pytest.approx(0.05)
    # the guarantee holds over calibration sets: 30 of them, each tried on 300 fresh controls
    rates = [DisplayThreshold(rate=0.05).fit(null(39)).lights_up(null(300)).mean() for _ in range(30)]
    assert 0.035 < np.mean(rates) < 0.065, np.mean(rates)
    effect = null(1)
    effect[0, 2:5, 2:5, 3:6] += 3.0
    assert display.lights_up(effect)[0] and display.transform(effect)[0].max() > 1.0
    few = DisplayThreshold(rate=0.05).fit(null(4))  # too few controls for 5 %: the largest peak, bound 1/5
    assert few.threshold_ == few.peaks_.max() and few.bound_ == pytest.approx(0.2)
    assert "20 %" in few.describe()


def test_control_composites_partition_every_control_into_groups_of_five_or_more():
    from sepclr_med.report.composites import composite_groups, control_composites

    rng = np.random.default_rng(1)
    volumes = rng.normal(size=(23, 7, 8, 9)).astype(np.float32)
    groups = composite_groups(23, seed=3)
    assert [len(g) for g in groups] == [6, 6, 6, 5]
    assert sorted(np.concatenate(groups).tolist()) == list(range(23))  # disjoint, and nobody left over
    composites, sizes = control_composites(lambda i: volumes[i], 23, seed=3)
    assert composites.shape == (4, 7, 8, 9) and sizes.tolist() == [6, 6, 6, 5]
    np.testing.assert_allclose(composites[1], volumes[groups[1]].mean(axis=0), atol=2e-3)  # float16-exact values
    # the controls' mean minus the composites leaves nothing to recover (a left-over scan would remain)
    residual = 23 * volumes.mean(axis=0) - (sizes[:, None, None, None] * composites).sum(axis=0)
    assert np.abs(residual).max() < 0.02
    assert control_composites(lambda i: volumes[i], 9)[0].shape == (1, 7, 8, 9)  # one: reports fall back to IG
    assert control_composites(lambda i: volumes[i], 4)[0].shape == (0,)


def test_the_display_threshold_states_its_bound_rounded_up_and_refuses_zero_maps():
    from sepclr_med.report.display_threshold import DisplayThreshold

    rng = np.random.default_rng(4)
    maps = rng.normal(size=(15, 7, 8, 9))
    display = DisplayThreshold().fit(maps)
    assert display.bound_ == pytest.approx(1 / 16) and display.stated_bound() == 6.3  # 6.25 %, never "6 %"
    assert DisplayThreshold().fit(maps[:18].repeat(2, axis=0)[:18]).stated_bound() == 5.3  # 1/19 = 5.26 %
    with pytest.raises(ValueError, match="zero everywhere"):
        DisplayThreshold().fit(np.zeros((20, 7, 8, 9)))


def test_the_reference_state_round_trips_to_the_same_placements():
    from sepclr_med.report.reference import Reference

    rng = np.random.default_rng(2)
    n = 30
    latents = pd.DataFrame(rng.normal(size=(2 * n, 4)), columns=[f"salient_{i}" for i in range(4)])
    latents.loc[n:, "salient_1"] += 2.5
    latents.insert(0, "group", ["control"] * n + ["patient"] * n)
    latents.insert(1, "split", ["train", "val"] * n)
    reference = Reference(random_state=1).fit(latents)
    restored = Reference.from_state(dict(reference.state()))
    new = rng.normal(size=(5, 4))
    pd.testing.assert_frame_equal(reference.place(new), restored.place(new))
    assert not np.array_equal(restored.patient_points_, reference.patient_points_)  # shuffled order
    # not by the run's seed, which travels with the state: two exports order the points differently
    assert not np.array_equal(reference.state()["patient_points"], reference.state()["patient_points"])
