"""The data pipeline: preprocessing transforms, cache, contrastive views and batch sampler.

``cohort records -> preprocessing (cached) -> two augmented views -> stratified batches``
"""

from sepclr_med.data.augment import AugmentConfig, ContrastiveViews, ContrastiveViewsd
from sepclr_med.data.dataset import TwoViewDataset, cached_dataset
from sepclr_med.data.preprocess import PreprocessConfig, preprocessing
from sepclr_med.data.sampler import GroupStratifiedBatchSampler

__all__ = [
    "AugmentConfig",
    "ContrastiveViews",
    "ContrastiveViewsd",
    "GroupStratifiedBatchSampler",
    "PreprocessConfig",
    "TwoViewDataset",
    "cached_dataset",
    "preprocessing",
]
