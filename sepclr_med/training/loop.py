"""The training loop: seeded, stratified, checkpointed every epoch, resumable, DDP-aware."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sepclr_med.atomic import atomic_path, write_table, write_text
from sepclr_med.data import BatchViews, GroupStratifiedBatchSampler, VolumeStore, batches, cached_dataset
from sepclr_med.errors import SepclrError
from sepclr_med.io.cohort import Cohort
from sepclr_med.locking import output_lock
from sepclr_med.losses import TERMS, LeakageAdversary, SepCLRLoss, SepCLRObjective
from sepclr_med.models import SepCLRModel
from sepclr_med.training.checkpoint import load_checkpoint, save_checkpoint
from sepclr_med.training.config import TrainConfig
from sepclr_med.training.distributed import DistContext, init_distributed, shutdown
from sepclr_med.training.monitor import (
    VAL_NORMS,
    kept_epoch,
    salient_separation,
    selection_p_value,
    verdict,
    verdict_warning,
)
from sepclr_med.training.run_files import library_versions, model_card, read_metrics, sha256
from sepclr_med.training.tracking import Trackers


class TrainingDiverged(SepclrError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


log = logging.getLogger(__name__)
PROGRESS_EVERY = 25  # steps between the progress bar's loss figures (each one waits for the device)


@dataclasses.dataclass
class Feed:
    """What a training or validation pass reads: the cached volumes, the batches, the views
    made of each batch on the device, and the group labels (host, so masks need no device sync)."""

    store: VolumeStore
    sampler: GroupStratifiedBatchSampler
    views: BatchViews
    labels: torch.Tensor
    device: torch.device
    read_ahead: int = 1
    epoch: int = 0

    def __iter__(self):
        """``(indices, volumes)`` per batch, the volumes on ``self.device``."""
        return batches(self.store, self.sampler, self.device, self.read_ahead)

    def two_views(self, indices, volumes) -> dict:
        """The step's input: both views of a batch, made where it is, and its labels."""
        first, second = self.views(volumes, indices, self.epoch)
        return {"view1": first, "view2": second, "is_target": self.labels[indices]}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA). Transforms are seeded per item."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_subjects(cohort: Cohort, val_fraction: float, seed: int) -> np.ndarray:
    """``"train"``/``"val"`` per subject, stratified by group, >= 2 of each group in val.

    A group too small to spare 2 validation subjects without giving up more than a quarter of it
    (fewer than 8 subjects) gives no validation split at all: the verdict is then ``unchecked``.
    Not scikit-learn's ``train_test_split(stratify=...)``: it has no per-group minimum (the
    verdict's AUC needs both groups in validation) and would change every run's split.
    """
    rng = np.random.default_rng([seed, 7])
    split = np.array(["train"] * len(cohort), dtype=object)
    if val_fraction <= 0:
        return split
    picks = []
    for group in (False, True):
        idx = np.flatnonzero(cohort.is_target == group)
        n_val = max(2, int(round(val_fraction * len(idx))))
        if len(idx) - n_val < 2 or n_val > len(idx) / 4:
            return split
        picks.append(rng.choice(idx, n_val, replace=False))
    split[np.concatenate(picks)] = "val"
    return split


def _checked_alignment(cohort: Cohort, allow_unaligned: bool, console=None) -> pd.DataFrame:
    """Template-space measures of every scan (those of ``cohort.alignment`` when already checked);
    a scan that fails stops training unless ``allow_unaligned``."""
    from sepclr_med.errors import CohortError
    from sepclr_med.io.image_checks import alignment_problems, check_alignment

    measures = check_alignment(cohort)[0] if cohort.alignment is None else cohort.alignment
    failing = measures.loc[~measures["aligned"].astype(bool), "subject_id"].tolist()
    if failing and not allow_unaligned:
        raise CohortError(alignment_problems(cohort, measures))
    if failing and console is not None:
        from rich.markup import escape

        console.print(
            f"[bold red]WARNING[/]: {len(failing)} scan(s) are not in MNI152 template space and are used "
            f"anyway (--allow-unaligned): {escape(', '.join(failing[:10]))}"
        )
    return measures


INPUTS = "inputs.tsv"  # what was trained on, per subject: resume refuses a change


def _inputs(cohort: Cohort) -> pd.DataFrame:
    """Per subject: the table's values the run uses and the SHA-256 of the image's bytes."""
    columns = ["subject_id", "group", *cohort.confound_columns, *cohort.score_columns]
    values = cohort.table[columns].astype(object)
    table = values.where(values.notna(), "").astype(str)  # missing as "", as the TSV reads back
    table["image"] = cohort.table["image"].to_numpy()
    table["image_sha256"] = [sha256(p) for p in cohort.table["image"]]
    return table


def _check_inputs_unchanged(cohort: Cohort, out: Path, console=None) -> None:
    """--resume on the same data only: name what changed since the run started."""
    path = out / INPUTS
    if not path.is_file():
        if console is not None:
            console.print(
                f"[yellow]warning[/]: {out} predates {INPUTS}: whether the cohort changed since it "
                "started is not checked"
            )
        return
    stored = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).set_index("subject_id")
    now = _inputs(cohort).set_index("subject_id")
    changes = []
    for column in sorted((set(stored.columns) | set(now.columns)) - {"image"}):  # moved files: same content is fine
        if column not in stored.columns or column not in now.columns:
            changes.append(f"column {column!r} {'added' if column in now.columns else 'removed'}")
            continue
        for sid in now.index[now[column] != stored.loc[now.index, column]]:
            what = (
                "image content"
                if column == "image_sha256"
                else f"{column} {stored.loc[sid, column]!r} -> {now.loc[sid, column]!r}"
            )
            changes.append(f"{sid}: {what}")
    if changes:
        listed = "; ".join(changes[:10]) + (f"; and {len(changes) - 10} more" if len(changes) > 10 else "")
        raise SepclrError(
            f"--resume: the cohort differs from the one this run started on ({listed}); resume with "
            "the same data, or train a new run"
        )


def _unaligned(out: Path) -> list[str]:
    path = out / "alignment.tsv"
    if not path.is_file():
        return []
    table = pd.read_csv(path, sep="\t")
    return table.loc[~table["aligned"].astype(bool), "subject_id"].astype(str).tolist()


def _checked_split(split, cohort: Cohort) -> np.ndarray:
    split = np.asarray(split, dtype=object)
    if len(split) != len(cohort) or not set(split) <= {"train", "val"}:
        raise SepclrError(f"split must give 'train' or 'val' for each of the {len(cohort)} subjects")
    for name in ("train", "val"):
        part = cohort.is_target[split == name]
        if name == "train" or len(part):
            if part.sum() < 2 or (~part).sum() < 2:
                raise SepclrError(f"split: the {name} part needs >= 2 controls and >= 2 patients")
    return split


@contextmanager
def batch_statistics_frozen(model: torch.nn.Module):
    """Train-mode forward (BatchNorm uses batch statistics, as in the training loss) without
    updating running statistics: the validation loss is then on the training loss's scale."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        for m, state in zip(norms, saved, strict=True):
            m.load_state_dict(state)
        model.train(was_training)


class Trainer:
    """Train SepCLR on a cohort into a run directory.

    Parameters
    ----------
    config : TrainConfig
        Hyper-parameters.
    console : rich.console.Console, optional
        Where the main process prints; progress bars need one.
    """

    def __init__(self, config: TrainConfig, console=None, epochs_given: int | None = None) -> None:
        self.config = config
        self.console = console
        self.epochs_given = epochs_given  # on resume: None keeps the run's own epoch count
        self.scalars: Trackers | None = None  # TensorBoard events (and MLflow), opened with the first epoch

    # -- setup -------------------------------------------------------------------------------
    def _prepare_run(self, cohort: Cohort, out: Path, resume: bool, ctx: DistContext):
        config = self.config
        if resume:
            if not (out / "checkpoints" / "last.pt").is_file():
                raise SepclrError(f"--resume: no checkpoint in {out / 'checkpoints'}")
            stored = TrainConfig.load_run(out)
            given = self.epochs_given if self.epochs_given is not None else stored.optim.epochs
            config = dataclasses.replace(
                stored,
                optim=dataclasses.replace(stored.optim, epochs=given),
                device=config.device,
                num_workers=config.num_workers,
                tracking=config.tracking if config.tracking != "tensorboard" else stored.tracking,
            )
            table = pd.read_csv(out / "split.csv", dtype=str, keep_default_na=False).set_index("subject_id")
            missing = set(cohort.subject_ids) - set(table.index)
            if missing:
                raise SepclrError(f"--resume: subjects not in the run's split: {sorted(missing)[:5]}")
            changed = [
                s for s, g in zip(cohort.subject_ids, cohort.table["group"], strict=True) if table.loc[s, "group"] != g
            ]
            if changed:
                raise SepclrError(f"--resume: group labels differ from the run's for {sorted(changed)[:5]}")
            split = table.loc[cohort.subject_ids, "split"].to_numpy()
            _check_inputs_unchanged(cohort, out, self.console)
        else:
            if (out / "checkpoints" / "last.pt").exists() or (out / "model.pt").exists():
                raise SepclrError(f"{out} already holds a run; use --resume or another --out")
            config = dataclasses.replace(
                config,
                control_label=cohort.control_label,
                patient_label=cohort.patient_label,
                group_column=cohort.group_column,
                bids_selection=dict(cohort.bids_selection),
            )
            self.alignment = _checked_alignment(cohort, config.allow_unaligned, self.console)
            split = (
                split_subjects(cohort, config.val_fraction, config.seed)
                if self.split is None
                else _checked_split(self.split, cohort)
            )
            train = cohort.subset(split == "train")
            if not config.preprocess.resolved:
                pre = config.preprocess.resolve(
                    train.table["image"].tolist(), train.table["image"][~train.is_target].tolist()
                )
                config = dataclasses.replace(config, preprocess=pre)
            if ctx.is_main:
                self._write_static(cohort, out, config, split)
                write_table(out / "alignment.tsv", self.alignment, float_format="%.4g", safe=False)
        return config, split

    @staticmethod
    def _write_static(cohort: Cohort, out: Path, config: TrainConfig, split: np.ndarray) -> None:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.toml", config.to_toml())
        write_text(
            out / "split.csv",
            pd.DataFrame(
                {
                    "subject_id": cohort.subject_ids,
                    "group": cohort.table["group"],
                    "split": split,
                }
            ).to_csv(index=False),
        )
        if cohort.bids_root is None:
            with atomic_path(out / "cohort.csv") as tmp:  # an unpredictable name, never a planted link
                shutil.copyfile(cohort.source, tmp)
        else:  # participants.tsv names no images: the run keeps the table as read, images included
            columns = ["subject_id", "image", "group", *cohort.confound_columns, *cohort.score_columns]
            write_table(out / "cohort.csv", cohort.table[columns], safe=False)
        write_text(out / "cohort.sha256", f"{sha256(out / 'cohort.csv')}  {cohort.source}\n")
        write_text(out / "versions.json", json.dumps(library_versions(), indent=2))
        write_table(out / INPUTS, _inputs(cohort), safe=False)

    def _loader(
        self, cohort: Cohort, config: TrainConfig, ctx: DistContext, *, shuffle: bool, seed: int, world: int, rank: int
    ) -> Feed:
        store = cached_dataset(
            cohort.records(),
            config.preprocess,
            cache=config.cache,
            cache_dir=config.cache_dir,
            num_workers=config.num_workers,
        )
        store.place(ctx.device)
        views = BatchViews(config.augment, config.preprocess.output_shape, seed=seed)
        batch = min(config.optim.batch_size, len(cohort))
        sampler = GroupStratifiedBatchSampler(
            cohort.is_target, batch, shuffle=shuffle, seed=seed, num_replicas=world, rank=rank
        )
        labels = torch.tensor(np.asarray(cohort.is_target, dtype=bool))  # a copy: the table stays read-only
        return Feed(store, sampler, views, labels, ctx.device, read_ahead=max(config.num_workers, 1))

    # -- steps -------------------------------------------------------------------------------
    def _step(self, model, batch, ctx: DistContext, loss_fn: SepCLRLoss, gather: bool):
        """Loss of one batch (``view1``, ``view2``: ``(B, 1, *shape)``; ``is_target``: host bools).

        Nothing here waits for the device: the group masks are the host's labels, the statistics
        stay tensors (averaged once per epoch).
        """
        config = self.config
        device = ctx.device
        fmt = torch.channels_last_3d if config.channels_last else torch.contiguous_format
        x = torch.cat([batch[v].to(device, non_blocking=True) for v in ("view1", "view2")])
        x = x.contiguous(memory_format=fmt)
        y = batch["is_target"].cpu().bool()
        amp = config.amp and device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
            out = model(x, gather=ctx.gather if gather else None, n_views=2)
        y = ctx.gather_nograd(y.to(device)).cpu() if gather else y
        objective = SepCLRObjective(
            loss_fn, config.loss.lambda_independence, config.loss.lambda_adversary, self.adversary
        )
        total, terms = objective(out, y, self.weights["lambda_independence"], ctx.gather if gather else None)
        s1, s2 = out.salient_head.chunk(2)
        norms = torch.cat([s1, s2]).detach().float().norm(dim=1)
        patient = torch.cat([y, y]).to(norms.device, non_blocking=True).float()  # both views
        stats = {
            "loss": total.detach(),
            **{k: v.detach() for k, v in terms.items()},
            "salient_norm_control": (norms * (1 - patient)).sum() / (1 - patient).sum(),
            "salient_norm_patient": (norms * patient).sum() / patient.sum(),
        }
        return total, stats, (norms.view(2, -1).mean(0), y)

    @staticmethod
    def _epoch_means(records: list[dict]) -> dict:
        """Means of the per-step statistics: one transfer from the device for the whole epoch."""
        if not records:
            return {}
        keys = list(records[0])
        means = torch.stack([torch.stack([r[k].float() for k in keys]) for r in records]).mean(0).tolist()
        return dict(zip(keys, means, strict=True))

    # -- main --------------------------------------------------------------------------------
    def fit(self, cohort: Cohort, out, *, resume: bool = False, split: np.ndarray | None = None) -> Path:
        """Train on ``cohort`` and write the run directory ``out``; return its path.

        ``split`` (``"train"``/``"val"`` per subject) replaces the seeded validation split
        (``sepclr-med tune`` passes its folds).
        """
        out = Path(out)
        self.split = split
        ctx = init_distributed(self.config.device)
        try:
            with output_lock(out) if ctx.is_main else nullcontext():  # one writer per run folder
                return self._fit(cohort, out, resume, ctx)
        finally:
            shutdown(ctx)

    def _fit(self, cohort: Cohort, out: Path, resume: bool, ctx: DistContext) -> Path:
        config, split = self._prepare_run(cohort, out, resume, ctx)
        self.config = config
        ctx.barrier()
        seed_everything(config.seed)
        train_c = cohort.subset(split == "train")
        val_c = cohort.subset(split == "val")
        self._say_split(train_c, val_c)
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shape: pick the fastest kernels once
        log.debug(
            "training on %s, %d math threads, grid %s",
            ctx.device,
            torch.get_num_threads(),
            config.preprocess.grid.describe(),
        )
        feed = self._loader(train_c, config, ctx, shuffle=True, seed=config.seed, world=ctx.world_size, rank=ctx.rank)
        val = (
            self._loader(val_c, config, ctx, shuffle=False, seed=config.seed + 1, world=1, rank=0)
            if len(val_c)
            else None
        )

        model, optimizer = self._build_model(config, ctx)
        start, history, val_norms = self._restore(out, model, optimizer, resume, ctx)
        wrapped = (
            torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
            if ctx.enabled
            else model
        )
        loss_fn = SepCLRLoss(config.loss.beta_salient, config.loss.beta_infoless, config.loss.lambda_jem)

        for epoch in range(start, config.optim.epochs):
            self.weights = config.loss.weights_at(epoch)
            loss_fn.beta_infoless = self.weights["beta_infoless"]
            feed.sampler.set_epoch(epoch)
            feed.epoch = epoch
            model.train()
            records, seconds, timing = self._train_epoch(wrapped, feed, optimizer, loss_fn, ctx, epoch, out)
            metrics = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in self._epoch_means(records).items()}}
            val_metrics, val_norm, val_y = self._validate(model, val, ctx, loss_fn)
            metrics.update(val_metrics)
            metrics.update(
                {
                    "lr": optimizer.param_groups[0]["lr"],
                    "epoch_seconds": seconds,
                    "volumes_per_second": len(train_c) / seconds,
                    **timing,
                }
            )
            history.append(metrics)
            if val_norm is not None and val_norms is not None:
                val_norms.rows.append(val_norm)
                val_norms.epochs.append(epoch + 1)
                val_norms.is_target = val_y
            if ctx.is_main:
                self._save_epoch(out, model, optimizer, history, val_norms, epoch)
                self._say(metrics)
            ctx.barrier()

        if ctx.is_main:
            parts = [(train_c, feed.store, "train")] + ([(val_c, val.store, "val")] if val is not None else [])
            self._finish(cohort, out, model, history, val_norms, split, parts, ctx)
        # no barrier here: other ranks leave while rank 0 writes (a long barrier would hit NCCL's timeout)
        return out

    def _build_model(self, config: TrainConfig, ctx: DistContext):
        """The encoders (and the adversary when asked for) on the device, and their optimizer."""
        model = SepCLRModel(config.model).to(ctx.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # torch's stub omits it
        params = list(model.parameters())
        self.adversary = None
        if config.loss.lambda_adversary > 0:
            torch.manual_seed(config.seed + 1)
            self.adversary = LeakageAdversary(config.model.common_dim, config.model.salient_dim).to(ctx.device)
            params += list(self.adversary.parameters())
        return model, torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)

    def _restore(self, out: Path, model, optimizer, resume: bool, ctx: DistContext):
        """Where training starts: epoch, metrics history and validation norms (from ``last.pt`` on resume)."""
        if not resume:
            return 0, [], ValNorms([], [])
        state = load_checkpoint(out / "checkpoints" / "last.pt", ctx.device)
        model.load_state_dict(state["model"])
        if self.adversary is not None and "adversary" in state:
            self.adversary.load_state_dict(state["adversary"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        return start, [m for m in read_metrics(out) if m["epoch"] <= start], _read_val_norms(out, start)

    def _train_epoch(
        self, wrapped, feed: Feed, optimizer, loss_fn, ctx: DistContext, epoch: int, out: Path
    ) -> tuple[list[dict], float, dict]:
        """One pass over the training batches: per-step statistics, seconds, and where the host
        spent them: waiting for the batch's volumes (``data_seconds``), making the views
        (``augment_seconds``) and the step itself (``compute_seconds``). On CUDA the host does not
        wait for the device's queue, so views and step count where the device makes the host wait.
        A non-finite loss stops training at the end of the epoch (the check is one device sync per
        epoch), keeping the previous epoch's checkpoint.
        """
        config = self.config
        tic, records, seen, waited, augmenting = time.perf_counter(), [], 0, 0.0, 0.0
        finite = torch.ones((), dtype=torch.bool, device=ctx.device)
        with self._progress(len(feed.sampler), epoch, config.optim.epochs, ctx) as advance:
            ready = time.perf_counter()
            for step, (indices, volumes) in enumerate(feed):
                arrived = time.perf_counter()
                waited += arrived - ready
                batch = feed.two_views(indices, volumes)
                augmenting += time.perf_counter() - arrived
                total, stats, _ = self._step(wrapped, batch, ctx, loss_fn, gather=ctx.enabled)
                finite &= torch.isfinite(total.detach())
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                records.append(stats)
                seen += len(indices) * ctx.world_size
                advance(stats if step % PROGRESS_EVERY == 0 else None, seen / (time.perf_counter() - tic))
                ready = time.perf_counter()
        if not bool(finite):
            bad = next(i for i, r in enumerate(records) if not torch.isfinite(r["loss"]))
            detail = ", ".join(f"{k}={float(v):.4g}" for k, v in records[bad].items())
            raise TrainingDiverged(
                f"non-finite loss at epoch {epoch + 1}, step {bad + 1} ({detail}); training "
                f"stopped, the last good checkpoint (epoch {epoch}) is kept in "
                f"{out / 'checkpoints'}. Lower --lr or the loss weights."
            )
        seconds = time.perf_counter() - tic
        timing = {
            "data_seconds": waited,
            "augment_seconds": augmenting,
            "compute_seconds": seconds - waited - augmenting,
        }
        return records, seconds, timing

    def _save_epoch(self, out: Path, model, optimizer, history: list[dict], val_norms, epoch: int) -> None:
        """After an epoch: metrics (and their TensorBoard scalars), validation norms, the best
        weights so far, the resume checkpoint."""
        config = self.config
        write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
        if self.scalars is None:
            self.scalars = Trackers(out, self.config)
        self.scalars.log(history[-1])
        if val_norms is not None and val_norms.rows:
            _write_val_norms(out, val_norms)
        if config.keep == "best-val" and kept_epoch(history, config.optim.epochs) == epoch + 1:
            with atomic_path(out / "checkpoints" / "best.pt") as tmp:
                torch.save({"model": model.state_dict(), "epoch": epoch + 1}, tmp)
        save_checkpoint(
            out / "checkpoints" / "last.pt",
            model=model,
            optimizer=optimizer,
            epoch=epoch + 1,
            extra={"adversary": self.adversary.state_dict()} if self.adversary is not None else None,
        )

    def _finish(
        self,
        cohort: Cohort,
        out: Path,
        model,
        history: list[dict],
        val_norms,
        split: np.ndarray,
        parts: list,
        ctx: DistContext,
    ) -> None:
        """The kept weights as ``model.pt``, the reference statistics, the verdict and the model card."""
        config = self.config
        if self.scalars is not None:
            self.scalars.close()
            self.scalars = None
        has_val = len(parts) > 1
        kept = self._keep_weights(model, history, out, ctx)
        with atomic_path(out / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        write_reference(model, config, parts, cohort, out)
        val_c = cohort.subset(split == "val")
        n_val = {"control": int((~val_c.is_target).sum()), "patient": int(val_c.is_target.sum())}
        p_value = (
            selection_p_value(
                np.stack(val_norms.rows),
                val_norms.is_target,
                np.array(val_norms.epochs),
                config.optim.epochs,
                seed=config.seed,
            )
            if has_val
            and val_norms is not None
            and val_norms.is_target is not None
            and len(val_norms.rows) == len(history)
            else None
        )
        judged = verdict(history, kept if has_val else None, n_val, p_value)
        judged["kept"] = config.keep
        write_text(out / "verdict.json", json.dumps(judged, indent=2))
        counts = dict(zip(*np.unique(split, return_counts=True), strict=True))
        card = model_card(
            config, cohort, {k: int(v) for k, v in counts.items()}, history, library_versions(), judged, _unaligned(out)
        )
        write_text(out / "MODEL_CARD.md", card)
        self._say_verdict(judged)

    @torch.no_grad()
    def _validate(
        self, model, val, ctx: DistContext, loss_fn: SepCLRLoss
    ) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
        """Validation loss terms and the salient space's separation (:mod:`.monitor`)."""
        if val is None:
            return {}, None, None
        records, norm_parts, label_parts = [], [], []
        with batch_statistics_frozen(model):
            for indices, volumes in val:
                batch = val.two_views(indices, volumes)
                _, stats, (norm, y) = self._step(model, batch, ctx, loss_fn, gather=False)
                records.append(stats)
                norm_parts.append(norm)  # on the device: one transfer after the loop
                label_parts.append(y)
        norms, labels = torch.cat(norm_parts).float().cpu().numpy(), torch.cat(label_parts).numpy()
        separation = salient_separation(norms, labels)
        return {f"val_{k}": v for k, v in {**self._epoch_means(records), **separation}.items()}, norms, labels

    def _keep_weights(self, model, history: list[dict], out: Path, ctx: DistContext) -> int:
        """Load the kept epoch's weights into ``model`` (``keep = "best-val"``); return that epoch."""
        last = history[-1]["epoch"]
        if self.config.keep != "best-val":
            return last
        kept = kept_epoch(history, self.config.optim.epochs)
        if kept is None or kept == last:
            return last
        state = load_checkpoint(out / "checkpoints" / "best.pt", ctx.device)
        if int(state["epoch"]) != kept:  # resumed with more epochs: the second half moved
            if self.console is not None:
                self.console.print(
                    f"[yellow]warning[/]: the kept-weights rule now picks epoch {kept}, whose "
                    f"weights were not stored (resumed with more epochs); model.pt keeps epoch "
                    f"{int(state['epoch'])}, the best stored one"
                )
            kept = int(state["epoch"])
        model.load_state_dict(state["model"])
        return kept

    def _say_split(self, train_c: Cohort, val_c: Cohort) -> None:
        if self.console is None:
            return
        from rich.markup import escape

        def sizes(part: Cohort) -> str:
            return (
                f"{int((~part.is_target).sum())} {escape(part.control_label)} + "
                f"{int(part.is_target.sum())} {escape(part.patient_label)}"
            )

        self.console.print(
            f"split: training {sizes(train_c)}; "
            + (
                f"validation: {sizes(val_c)}"
                if len(val_c)
                else "[bold yellow]no validation subjects[/] (a group has fewer than 8 subjects, "
                "or val_fraction is 0): "
                "the verdict will be 'unchecked'"
            )
        )

    def _say_verdict(self, judged: dict) -> None:
        if self.console is None:
            return
        warning = verdict_warning(judged)
        if warning is None:
            self.console.print(f"[green]Verdict[/]: {judged['message']}.")
        else:
            from rich.markup import escape

            self.console.print(f"[bold red]WARNING[/]: {escape(warning)}")

    def _say(self, m: dict) -> None:
        if self.console is None:
            return
        terms = " ".join(f"{name} {value:+.3f}" for name, value in self._weighted_terms(m))
        val = f" val_loss={m['val_loss']:.3f} val_salient_auc={m['val_salient_auc']:.2f}" if "val_loss" in m else ""
        self.console.print(
            f"epoch {m['epoch']:>3}: loss={m['train_loss']:.3f} = {terms}{val} | salient norm "
            f"control {m['train_salient_norm_control']:.2f} patient {m['train_salient_norm_patient']:.2f}"
            f" | {m['epoch_seconds']:.1f} s, {m['volumes_per_second']:.1f} vol/s"
        )

    def _weighted_terms(self, m: dict) -> list[tuple[str, float]]:
        """Every term of the epoch's total as ``(weight x name, weighted mean)``: they add up to
        the loss, so the console shows which term makes most of it."""
        loss, w = self.config.loss, self.weights
        weights = {
            "common": 1.0,
            "salient": loss.beta_salient,
            "infoless": w["beta_infoless"],
            "jem": loss.lambda_jem,
            "independence": w["lambda_independence"],
        }
        shown = [
            (name if weight == 1 else f"{weight:g}x{name}", weight * m[f"train_{name}"])
            for name, weight in weights.items()
            if f"train_{name}" in m and (name in TERMS or weight > 0)
        ]
        if "train_adversary_r2" in m:
            shown.append(
                (f"{loss.lambda_adversary:g}x(1-adversary_r2)", loss.lambda_adversary * (1 - m["train_adversary_r2"]))
            )
        return shown

    def _progress(self, total: int, epoch: int, epochs: int, ctx: DistContext):
        @contextmanager
        def bar():
            if self.console is None or not ctx.is_main:
                yield lambda stats, rate: None
                return
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} {task.fields[info]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            ) as progress:
                task = progress.add_task("train", total=total, epoch=f"{epoch + 1}/{epochs}", info="")

                shown = {"info": ""}

                def advance(stats, rate):  # stats None: keep the last figures (no device wait)
                    if stats is not None:
                        shown["info"] = " ".join(f"{k}={float(stats[k]):.3f}" for k in ("loss", *TERMS))
                    progress.update(task, advance=1, info=f"{shown['info']} {rate:.1f} vol/s")

                yield advance

        return bar()


@dataclasses.dataclass
class ValNorms:
    """Salient norms of the validation subjects (same order every epoch), one row per epoch."""

    rows: list
    epochs: list
    is_target: np.ndarray | None = None


def _write_val_norms(out: Path, record: ValNorms) -> None:
    assert record.is_target is not None  # set with the first epoch's norms, before any write
    with atomic_path(out / VAL_NORMS) as tmp, open(tmp, "wb") as f:
        np.savez(f, norms=np.stack(record.rows), epoch=np.array(record.epochs), is_target=record.is_target)


def _read_val_norms(out: Path, start: int) -> ValNorms | None:
    """The stored rows of epochs ``<= start``; None when some are missing (older runs): no p-value then."""
    if start == 0:
        return ValNorms([], [])
    path = out / VAL_NORMS
    if not path.is_file():
        return None
    with np.load(path) as data:
        keep = data["epoch"] <= start
        if keep.sum() != start:
            return None
        return ValNorms(list(data["norms"][keep]), data["epoch"][keep].tolist(), data["is_target"])


@torch.no_grad()
def write_reference(model: SepCLRModel, config: TrainConfig, parts: list, cohort: Cohort, out: Path) -> None:
    """Store what later stages compare new subjects with, so they never re-read training images:
    ``reference_latents.csv`` (reps of every training-cohort subject, eval mode, with its split)
    and ``reference_control_mean.nii.gz`` (mean preprocessed image of the training controls).

    ``parts`` are ``(sub-cohort, dataset of its preprocessed volumes, split name)``, the
    training loop's own (cached) datasets, so nothing is decoded again.
    """
    from sepclr_med.atomic import save_nifti
    from sepclr_med.training.encode import encode_dataset, latent_table

    device = next(model.parameters()).device
    tables = []
    for sub, data, name in parts:
        table = latent_table(sub, *encode_dataset(model, data, device=device))
        table.insert(2, "split", name)
        tables.append(table)
    order = {sid: i for i, sid in enumerate(cohort.subject_ids)}
    latents = pd.concat(tables).sort_values("subject_id", key=lambda s: s.map(order))
    write_text(out / "reference_latents.csv", latents.to_csv(index=False, float_format="%.6g"))
    train_c, train_data, _ = parts[0]
    controls = np.flatnonzero(~train_c.is_target)
    mean = sum(train_data[i]["image"][0].numpy().astype(np.float64) for i in controls) / len(controls)
    save_nifti(config.preprocess.grid.image(mean), out / "reference_control_mean.nii.gz")


def train(
    cohort: Cohort,
    out,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    console=None,
    epochs: int | None = None,
    split: np.ndarray | None = None,
) -> Path:
    """Train SepCLR on ``cohort`` into the run directory ``out`` (see :mod:`sepclr_med.run`).

    Parameters
    ----------
    cohort : Cohort
        Validated cohort (controls = background, patients = target).
    out : path-like
        Run directory.
    config : TrainConfig, optional
        Hyper-parameters (defaults: :class:`TrainConfig`).
    resume : bool
        Continue from ``out/checkpoints/last.pt`` with the run's stored configuration.
    epochs : int, optional
        With ``resume``: train up to this many epochs in total (default: the run's own count).
    console : rich.console.Console, optional
        Progress and per-epoch lines.
    split : array of str, optional
        ``"train"``/``"val"`` per subject instead of the seeded validation split.
    """
    return Trainer(config or TrainConfig(), console, epochs).fit(cohort, out, resume=resume, split=split)
