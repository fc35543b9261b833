"""The data pipeline: preprocessing transforms, the volume store, batch views and batch sampler.

``cohort records -> preprocessing (cropped, float16, cached) -> stratified batches on the device
-> two augmented views of each batch, made on the device``
"""

from sepclr_med.data.augment import AugmentConfig, ContrastiveViews, ContrastiveViewsd
from sepclr_med.data.batch_views import BatchViews
from sepclr_med.data.dataset import TwoViewDataset, cached_dataset
from sepclr_med.data.preprocess import PreprocessConfig, preprocessing
from sepclr_med.data.sampler import GroupStratifiedBatchSampler
from sepclr_med.data.store import VolumeStore, batches

__all__ = [
    "AugmentConfig",
    "BatchViews",
    "ContrastiveViews",
    "ContrastiveViewsd",
    "GroupStratifiedBatchSampler",
    "PreprocessConfig",
    "TwoViewDataset",
    "VolumeStore",
    "batches",
    "cached_dataset",
    "preprocessing",
]
