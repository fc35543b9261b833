"""What comes in: cohort tables and BIDS datasets, NIfTI images and their grid, scan checks
(readability, geometry, template space) and atlases. Nothing here imports torch or the rooms
after it (data, models, training, ...)."""
