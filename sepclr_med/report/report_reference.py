"""What every report page is compared with: the run's reference distributions, the control
composites its maps are attributed against, and the display threshold calibrated on held-out
controls. Computed from a run directory (whose training scans must still be readable) or loaded
from an exported model (``sepclr-med export``), with the same numbers either way.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sepclr_med.errors import SepclrError
from sepclr_med.report.composites import control_composites
from sepclr_med.report.display_threshold import DisplayThreshold
from sepclr_med.report.reference import Reference

MAX_CALIBRATION = 64  # held-out controls whose maps calibrate the display threshold
REPORT_STEPS = 16  # expected-gradient samples per subject (the calibration's and the pages' budget)


def subject_seed(subject_id: str) -> int:
    """The expected-gradient seed of one subject: its map does not depend on its batch."""
    return zlib.crc32(str(subject_id).encode("utf-8"))


@dataclass
class ReportReference:
    """The reference of a batch of reports.

    Attributes
    ----------
    reference : Reference
        Deviation distributions, patient clusters, 2D map (no per-subject rows).
    control_mean : ndarray (X, Y, Z)
        Mean preprocessed image of the training controls (the baseline when no composites).
    composites : ndarray (k, X, Y, Z)
        Control composites (:mod:`~sepclr_med.report.composites`); ``k < 2``: integrated
        gradients from ``control_mean`` instead of expected gradients.
    display : DisplayThreshold or None
        The calibrated display threshold (None: no held-out control to calibrate on).
    n_steps : int
        Attribution budget the threshold was calibrated with.
    notes : list of str
        What makes these maps less trustworthy than they should be (shown on every page).
    """

    reference: Reference
    control_mean: np.ndarray
    composites: np.ndarray
    display: DisplayThreshold | None
    n_steps: int = REPORT_STEPS
    notes: list[str] = field(default_factory=list)
    composite_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    @property
    def method(self) -> str:
        """``"eg"`` over the composites, or ``"ig"`` from the controls' mean when fewer than 2."""
        return "eg" if self.composites.ndim == 4 and len(self.composites) >= 2 else "ig"

    def describe_method(self, n_steps: int | None = None) -> str:
        """One sentence for the page: how its maps were computed (with ``n_steps`` samples, the
        reference's own budget by default)."""
        steps = self.n_steps if n_steps is None else n_steps
        if self.method == "eg":
            sizes = self.composite_sizes
            each = f"{sizes.min()}" if len(sizes) and sizes.min() == sizes.max() else f"{sizes.min()}-{sizes.max()}"
            return (
                f"expected gradients over {len(self.composites)} control composites (each the mean of {each} "
                f"training controls), {steps} samples"
            )
        return f"integrated gradients from the training controls' mean image, {steps} steps"

    def attribute(self, model, volumes, directions: np.ndarray, subject_ids, n_steps: int | None = None) -> np.ndarray:
        """Maps of ``volumes`` along ``directions`` (one seeded call per subject)."""
        import torch

        from sepclr_med.explain.saliency import attribute

        steps = n_steps or self.n_steps
        if self.method == "eg":
            baseline = torch.from_numpy(self.composites[:, None])
        else:
            baseline = torch.from_numpy(self.control_mean[None].astype(np.float32))
        return np.concatenate(
            [
                attribute(
                    model, volumes[k : k + 1], directions[k : k + 1], baseline,
                    method=self.method, n_steps=steps, seed=subject_seed(sid),
                )
                for k, sid in enumerate(subject_ids)
            ]
        ) if len(subject_ids) else np.zeros((0, *volumes.shape[2:]), np.float32)  # fmt: skip

    # --- made from a run directory -------------------------------------------------------------

    @classmethod
    def from_run(cls, run, model, device, n_steps: int = REPORT_STEPS) -> ReportReference:
        """Compute the reference from a run directory and its (still readable) training scans."""
        import torch

        pre = run.config.preprocess
        control, notes = run.config.control_label, []
        reference = Reference(run.config.patient_label, random_state=run.config.seed).fit(run.reference_latents())
        control_mean = np.asarray(run.reference_control_mean().dataobj, dtype=np.float32)
        train_controls = run.scans("train", control)
        volume_of = _volume_reader(train_controls, pre, run.path)
        composites, sizes = control_composites(volume_of, len(train_controls), seed=run.config.seed)
        if len(composites) < 2:
            notes.append(
                f"maps use integrated gradients from the controls' mean image: the run has "
                f"{len(train_controls)} training control scan(s) on record, fewer than the 10 that two "
                "control composites need"
            )
        partial = cls(reference, control_mean, composites, None, n_steps, notes, sizes)
        held_out = run.scans("val", control)[:MAX_CALIBRATION]
        if not held_out:
            notes.append(
                "the display threshold is not calibrated (the run has no held-out control): maps show their "
                "own 90th percentile, so something always lights up"
            )
            return partial
        read = _volume_reader(held_out, pre, run.path)
        volumes = torch.stack([torch.from_numpy(read(i))[None] for i in range(len(held_out))])
        with torch.no_grad():
            salient = model.salient_encoder(volumes.to(device)).cpu().numpy()
        maps = partial.attribute(
            model, volumes, reference.directions_.deviation_directions(salient), [r["subject_id"] for r in held_out]
        )
        mask = pre.mask_array() if pre.mask != "nonzero" else None
        try:
            partial.display = DisplayThreshold().fit(maps * mask if mask is not None else maps, mask)
        except ValueError as exc:  # e.g. every calibration map is zero: an encoder without gradient
            notes.append(f"the display threshold is not calibrated ({exc}): maps show their own 90th percentile")
        return partial

    # --- stored in an exported model ------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Named arrays (``numpy.savez``): the reference, the composites (float16), the threshold."""
        state = {f"reference.{k}": v for k, v in self.reference.state().items()}
        state["control_mean"] = self.control_mean.astype(np.float32)
        state["composites"] = self.composites.astype(np.float16)
        state["composite_sizes"] = np.asarray(self.composite_sizes, dtype=int)
        state["n_steps"] = np.array(self.n_steps)
        state["notes"] = np.array(self.notes, dtype=str)
        if self.display is not None:
            state["display.rate"] = np.array(self.display.rate)
            state["display.fwhm_voxels"] = np.array(self.display.fwhm_voxels)
            state["display.threshold"] = np.array(self.display.threshold_)
            state["display.bound"] = np.array(self.display.bound_)
            state["display.peaks"] = self.display.peaks_
        return state

    @classmethod
    def from_state(cls, state) -> ReportReference:
        """The reference from :meth:`state`'s arrays."""
        reference = Reference.from_state(
            {k.removeprefix("reference."): state[k] for k in state if k.startswith("reference.")}
        )
        display = None
        if "display.threshold" in state:
            display = DisplayThreshold(float(state["display.rate"]), float(state["display.fwhm_voxels"]))
            display.threshold_ = float(state["display.threshold"])
            display.bound_ = float(state["display.bound"])
            display.peaks_ = np.asarray(state["display.peaks"], dtype=float)
            display.n_controls_ = len(display.peaks_)
        return cls(
            reference,
            np.asarray(state["control_mean"], dtype=np.float32),
            np.asarray(state["composites"]).astype(np.float32),
            display,
            int(state["n_steps"]),
            [str(n) for n in np.atleast_1d(state["notes"])],
            np.asarray(state["composite_sizes"], dtype=int),
        )


def _volume_reader(scans: list[dict], pre, run_path: Path):
    """``read(i)``: the ``i``-th scan preprocessed, after checking it is the one trained on."""
    from sepclr_med.data import cached_dataset
    from sepclr_med.run import sha256

    data = cached_dataset([{"image": s["image"], "subject_id": s["subject_id"]} for s in scans], pre, cache="none")

    def read(i: int) -> np.ndarray:
        scan = scans[i]
        if not Path(scan["image"]).is_file() or sha256(scan["image"]) != scan["image_sha256"]:
            state = "is missing" if not Path(scan["image"]).is_file() else "changed since training"
            raise SepclrError(
                f"{run_path / 'inputs.tsv'}: the training scan of {scan['subject_id']} ({scan['image']}) {state}; "
                "reports of a run directory need its training controls' scans (the control composites and the "
                "display calibration). On the machine that holds them, at the paths in inputs.tsv, export the "
                "model (`sepclr-med export`), then report with the exported file anywhere."
            )
        return data[i]["image"][0].numpy().astype(np.float32)

    return read
