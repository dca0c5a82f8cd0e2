"""Named datasets behind one interface; every image is uint8 NHWC, values 0-255."""

from edgecnn.data.base import Dataset, adapt_images, calibration_sample
from edgecnn.data.registry import DATASET_NAMES, check_dataset_name, load_dataset

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "check_dataset_name",
    "adapt_images",
    "calibration_sample",
    "load_dataset",
]
