"""Datasets as tensors: the registry (built-in datasets and your image folders), the one batch
iterator, transforms and seeded splits. See ``tensors.py`` for the protocol every split follows."""

from cnnlab.data.datasets import (
    DATASETS,
    DatasetSpec,
    LoadOptions,
    data_root,
    get_dataset_spec,
    list_datasets,
    load_dataset,
    load_splits,
    normalization,
)
from cnnlab.data.splits import Splits, shuffle_labels, split_validation, stratified_holdout
from cnnlab.data.tensors import BatchSource, TensorData, index_batches, iterate_batches
from cnnlab.data.transforms import augment_batch, repeat_channels, resize_images

__all__ = [
    "DATASETS", "DatasetSpec", "LoadOptions", "Splits", "data_root", "get_dataset_spec", "list_datasets",
    "load_dataset", "load_splits", "normalization", "split_validation", "stratified_holdout", "shuffle_labels",
    "BatchSource", "TensorData", "index_batches", "iterate_batches", "augment_batch", "repeat_channels",
    "resize_images",
]
