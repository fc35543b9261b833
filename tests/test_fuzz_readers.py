"""Property-based fuzzing (hypothesis, bounded): whatever bytes a cohort table or a NIfTI header
holds, the readers raise only the project's own errors (issue 13)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import make_image
from sepclr_med.errors import SepclrError
from sepclr_med.io.image_checks import check_image
from sepclr_med.io.reading import read_cohort

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "n/a", "NaN", "inf", "-1", "1e308", "M,", "=1+1", "control", "patient", "../x", "\x00", " age "]
    ),
)


@FUZZ
@given(
    header=st.lists(
        st.one_of(
            st.sampled_from(["subject_id", "image", "group", "age", "Age", "sex", "site", "panss", ""]),
            st.text(max_size=8),
        ),
        min_size=1,
        max_size=7,
    ),
    rows=st.lists(st.lists(CELLS, max_size=8), max_size=6),
)
@example(header=["subject_id", "image", "group"], rows=[["", "\x00"]])  # found by a random run in CI
@example(header=["subject_id", "image", "group"], rows=[["a", "x" * 5000, "control"]])  # name too long
@example(header=["subject_id", "image", "group"], rows=[["a", "loop/x.nii", "control"]])
def test_cohort_reader_raises_only_its_own_errors(tmp_path, header, rows):
    path = tmp_path / "fuzz.csv"
    if not (tmp_path / "loop").is_symlink():
        (tmp_path / "loop").symlink_to(tmp_path / "loop")  # a link loop for the image paths
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes("\n".join(lines).encode("utf-8", errors="replace"))
    try:
        read_cohort(path, check_images=False)
    except SepclrError:
        pass


@FUZZ
@given(data=st.binary(min_size=0, max_size=600))
def test_cohort_reader_survives_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "bytes.csv"
    path.write_bytes(data)
    try:
        read_cohort(path, check_images=False)
    except SepclrError:
        pass


@FUZZ
@given(
    dims=st.lists(st.integers(-5, 70000), min_size=8, max_size=8),
    pixdim=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=8, max_size=8),
    datatype=st.sampled_from([2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1536, 2048, 0, 7]),
    vox_offset=st.floats(-10, 1e6, width=32),
)
def test_header_path_reports_errors_never_raises(tmp_path, dims, pixdim, datatype, vox_offset):
    path = make_image(tmp_path / "h.nii", np.ones((4, 5, 6), np.float32))
    raw = bytearray(path.read_bytes())
    raw[40:56] = struct.pack("<8h", *[max(-32768, min(32767, d)) for d in dims])
    raw[70:72] = struct.pack("<h", datatype)
    raw[76:108] = struct.pack("<8f", *pixdim)
    raw[108:112] = struct.pack("<f", vox_offset)
    path.write_bytes(bytes(raw))
    errors, grid = check_image(path)  # never raises: every problem is a message
    assert isinstance(errors, list) and (errors or grid is not None)


@pytest.mark.parametrize("truncate", [10, 200, 348, 360])
def test_truncated_files_are_messages(tmp_path, truncate):
    path = make_image(tmp_path / "t.nii", np.ones((4, 5, 6), np.float32))
    path.write_bytes(path.read_bytes()[:truncate])
    errors, grid = check_image(path)
    assert errors and grid is None
