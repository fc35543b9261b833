"""The notebook tutorial (docs/tutorial.ipynb) runs, cell by cell, as a user would run it."""

from __future__ import annotations

import json
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_notebook_tutorial_runs(tmp_path, monkeypatch):
    notebook = json.loads(TUTORIAL.read_text())
    code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 4
    monkeypatch.chdir(tmp_path)  # the tutorial writes into the current folder, as in a notebook
    namespace: dict = {}
    for k, source in enumerate(code):
        exec(compile(source, f"{TUTORIAL.name}[code cell {k}]", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "tutorial_run" / "model.pt").is_file()
    assert namespace["again"].verdict_ == namespace["model"].verdict_
