"""Preprocessed volumes in their storage precision, served a batch at a time where the model runs.

``VolumeStore`` replaces MONAI's ``CacheDataset``/``PersistentDataset`` for the training path
(issue 16): those keep float32 dictionaries of one subject each, 8.1 MiB per subject at 1.5 mm and
copied into a fresh batch every step. Here:

``cache="memory"``
    One ``(N, 1, *shape)`` tensor in the storage dtype (float16 by default) of the cropped grid
    (2.3 MiB per subject at 1.5 mm). :meth:`VolumeStore.place` moves it onto the GPU when it fits
    in a stated share of the free memory, else pins it, so a batch is one ``index_select``.
``cache="disk"``
    One ``.npy`` per subject under ``cache_dir/<settings hash>/``, named by the image's path, size
    and modification time (a changed file gets a new entry), written atomically and read
    memory-mapped; batches are read ahead of the step (:func:`batches`).
``cache="none"``
    Decoded on demand (``embed``, ``report``: each subject is read once).

Indexing the store gives MONAI-style dictionaries (``image`` as float32 ``(1, *shape)``, the
record's metadata, ``index``) so :func:`~sepclr_med.training.encode.encode_dataset` and the other
consumers keep working.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Compose

from sepclr_med.data.preprocess import STORAGE_DTYPES, PreprocessConfig, preprocessing
from sepclr_med.errors import SepclrError

log = logging.getLogger(__name__)
CACHE_MODES = ("memory", "disk", "none")
GPU_SHARE = 0.5  # the memory cache goes onto a GPU when it needs at most this share of its free memory


def _entry_name(path: str) -> str:
    """Disk-cache file name of an image: its absolute path, size and modification time."""
    stat = os.stat(path)
    key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:24] + ".npy"


class VolumeStore(torch.utils.data.Dataset):
    """The preprocessed volumes of a cohort, cached as ``cache`` says.

    Parameters
    ----------
    records : list of dict
        ``Cohort.records()``: ``image`` path plus metadata kept as is.
    config : PreprocessConfig
        Resolved preprocessing settings (grid, scale, storage ``dtype``).
    cache : {"memory", "disk", "none"}
        Where preprocessed volumes are kept (module docstring).
    cache_dir : path-like, optional
        Root of the disk cache (required for ``"disk"``).
    num_workers : int
        Threads that decode images while the cache fills (NIfTI decoding and resampling release
        the GIL for most of their time).
    """

    def __init__(
        self,
        records: list[dict],
        config: PreprocessConfig,
        *,
        cache: str = "memory",
        cache_dir: str | os.PathLike | None = None,
        num_workers: int = 0,
    ) -> None:
        if cache not in CACHE_MODES:
            raise SepclrError(f"cache must be one of {CACHE_MODES}, not {cache!r}")
        if cache == "disk" and cache_dir is None:
            raise SepclrError("cache='disk' needs a cache_dir")
        self.records = list(records)
        self.config = config
        self.cache = cache
        self.shape = config.output_shape
        self.dtype = STORAGE_DTYPES[config.dtype]
        self._transform = Compose(preprocessing(config))
        self._threads = max(int(num_workers), 1)
        self.volumes: torch.Tensor | None = None
        self.folder: Path | None = None
        if cache == "memory":
            self.volumes = self._fill_memory()
        elif cache == "disk":
            self.folder = Path(cache_dir) / config.hash()  # type: ignore[arg-type]  # checked above
            self.folder.mkdir(parents=True, exist_ok=True)
            self._paths = self._fill_disk()

    # -- filling -----------------------------------------------------------------------------
    def _decode(self, index: int) -> torch.Tensor:
        """Preprocess subject ``index``: ``(1, *shape)`` in the storage dtype."""
        image = self._transform({"image": self.records[index]["image"]})["image"]
        return torch.as_tensor(image).to(self.dtype)

    def _fill_memory(self) -> torch.Tensor:
        volumes = torch.empty((len(self.records), 1, *self.shape), dtype=self.dtype)

        def put(i: int) -> None:
            volumes[i] = self._decode(i)

        self._each(put, range(len(self.records)))
        return volumes

    def _fill_disk(self) -> list[Path]:
        assert self.folder is not None
        paths = [self.folder / _entry_name(r["image"]) for r in self.records]

        def put(i: int) -> None:
            if paths[i].is_file():
                return
            tmp = paths[i].with_name(f".{paths[i].stem}.{os.getpid()}.{i}.tmp.npy")  # same folder, then rename
            np.save(tmp, self._decode(i).numpy())
            os.replace(tmp, paths[i])

        self._each(put, range(len(paths)))
        return paths

    def _each(self, work, indices: Iterable[int]) -> None:
        if self._threads == 1:
            for i in indices:
                work(i)
            return
        with ThreadPoolExecutor(self._threads) as pool:
            list(pool.map(work, indices))  # list(): the first error is raised here

    # -- placement ---------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes the cached volumes take (memory: the tensor; disk: the files; none: 0)."""
        if self.volumes is not None:
            return self.volumes.numel() * self.volumes.element_size()
        if self.folder is not None:
            return sum(p.stat().st_size for p in self._paths)
        return 0

    def place(self, device: torch.device) -> str:
        """Keep the memory cache where ``device``'s batches are cheapest to make; return where.

        On CUDA: on the GPU when the cache needs at most ``GPU_SHARE`` of its free memory,
        otherwise in pinned host memory (asynchronous copies). Elsewhere it stays in RAM.
        """
        where = "host"
        if self.volumes is not None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = self.nbytes <= GPU_SHARE * free
            self.volumes = self.volumes.to(device) if fits else self.volumes.pin_memory()
            where = "gpu" if fits else "pinned host"
        log.debug(
            "volume store: %d subjects of %s, %s, %.1f MiB (%s cache) on %s",
            len(self),
            "x".join(map(str, self.shape)),
            self.dtype,
            self.nbytes / 2**20,
            self.cache,
            where,
        )
        return where

    # -- reading -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def volume(self, index: int) -> torch.Tensor:
        """Subject ``index``'s volume, ``(1, *shape)`` in the storage dtype, on the host."""
        if self.volumes is not None:
            return self.volumes[index].cpu()
        if self.folder is not None:
            return torch.from_numpy(np.array(np.load(self._paths[index], mmap_mode="r")))  # read from the page cache
        return self._decode(index)

    def __getitem__(self, index: int) -> dict:
        """MONAI-style item: the record, ``image`` as float32 ``(1, *shape)`` and ``index``."""
        return {**self.records[index], "image": self.volume(index).float(), "index": int(index)}

    def batch(self, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        """``(B, 1, *shape)`` volumes of ``indices`` on ``device``, in the storage dtype."""
        if self.volumes is not None and self.volumes.device.type != "cpu":  # on the GPU: a gather there
            index = torch.as_tensor(list(indices), dtype=torch.long)
            return self.volumes.index_select(0, index.to(self.volumes.device, non_blocking=True))
        # gathered on the host straight into a pinned buffer when the batch goes to CUDA (one
        # asynchronous copy, no second host copy to pin it)
        part = torch.empty((len(indices), 1, *self.shape), dtype=self.dtype, pin_memory=device.type == "cuda")
        if self.volumes is not None:
            torch.index_select(self.volumes, 0, torch.as_tensor(list(indices), dtype=torch.long), out=part)
        else:
            torch.stack([self.volume(int(i)) for i in indices], out=part)
        return part.to(device, non_blocking=True)


def batches(
    store: VolumeStore, batch_indices: Iterable[Sequence[int]], device: torch.device, read_ahead: int = 2
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``(indices, volumes)`` for each batch of ``batch_indices``.

    The memory cache makes each batch when asked (a gather, no decoding). Disk and on-demand
    stores read up to ``read_ahead`` batches ahead in background threads while the model computes
    on the current one; the threads live as long as the iteration (one per epoch), and the
    volumes arrive in the sampler's order.
    """
    if store.volumes is not None or read_ahead <= 0:
        for indices in batch_indices:
            yield list(indices), store.batch(indices, device)
        return
    with ThreadPoolExecutor(read_ahead) as pool:
        pending = []
        for indices in batch_indices:
            pending.append((list(indices), pool.submit(store.batch, indices, device)))
            if len(pending) > read_ahead:
                first, future = pending.pop(0)
                yield first, future.result()
        for first, future in pending:
            yield first, future.result()
