"""Where a prepared dataset lives and what its splits are called, shared by the writer
(prepare.py) and the reader (input_pipeline.py); and the error for data that cannot be used.

A prepared dataset is the tfds dataset `vaegan_images/NAME_R` (`NAME_R_grey` with one channel) in
a data_dir, in tfds's own folder layout: DATA_DIR/vaegan_images/NAME_R/VERSION/.
"""
from __future__ import annotations

import os

import numpy as np

BUILDER_NAME = 'vaegan_images'
VERSION = '1.0.0'
SPLITS = ('train', 'validation', 'test')
# The stored dtype of each kind of attributes (the metadata's 'attribute_kind'; datasets
# prepared before real-valued attributes existed have none and are binary).
ATTRIBUTE_DTYPES = {'binary': np.bool_, 'real': np.float32}


class DataError(ValueError):
  """Input data that cannot be used as it is; the message says why and what to do."""


def config_name(name: str, resolution: int, channels: int) -> str:
  """The tfds config of a prepared dataset: 'celeba_64', or 'mnist_32_grey' for one channel."""
  return f'{name}_{resolution}' + ('_grey' if channels == 1 else '')


def augmented_name(name: str, copies: int, seed: int) -> str:
  """The prepared dataset holding `copies` augmented copies of dataset `name` (augment.py)."""
  return f'{name}_augmented{copies}_seed{seed}'


def dataset_dir(data_dir: str, name: str, resolution: int, channels: int) -> str:
  """Where a prepared dataset lives: DATA_DIR/vaegan_images/NAME_R/1.0.0."""
  return os.path.join(data_dir, BUILDER_NAME, config_name(name, resolution, channels), VERSION)
