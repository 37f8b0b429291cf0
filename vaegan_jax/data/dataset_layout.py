"""Where a prepared dataset lives and what its splits are called, shared by the writer
(prepare.py) and the reader (input_pipeline.py); and the error for data that cannot be used.

A prepared dataset is the tfds dataset `vaegan_images/NAME_R` (`NAME_R_grey` with one channel) in
a data_dir, in tfds's own folder layout: DATA_DIR/vaegan_images/NAME_R/VERSION/.
"""
from __future__ import annotations

import os
import re

import numpy as np

BUILDER_NAME = 'vaegan_images'
VERSION = '1.0.0'
SPLITS = ('train', 'validation', 'test')
# The stored dtype of each kind of attributes (the metadata's 'attribute_kind'; datasets
# prepared before real-valued attributes existed have none and are binary).
ATTRIBUTE_DTYPES = {'binary': np.bool_, 'real': np.float32}

# What one input image may be, so that a hostile or broken file cannot exhaust memory: its file
# (or zip member) size, and its pixels, checked from the header before decoding. Generous for
# photos (a 50-megapixel camera's); prepare's --max_image_bytes / --max_image_pixels and the
# config's data.max_image_bytes / data.max_image_pixels raise them.
MAX_IMAGE_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 50_000_000
MAX_TABLE_BYTES = 512 * 2**20           # an attribute or partition table (CelebA's: 26 MB)


class DataError(ValueError):
  """Input data that cannot be used as it is; the message says why and what to do."""


# A dataset's name is one folder of the data_dir: no '/', no '..', nothing hidden.
NAME_FORMAT = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,99}')


def check_name(name: str) -> str:
  """`name`, if it can name a prepared dataset; DataError otherwise."""
  if not isinstance(name, str) or not NAME_FORMAT.fullmatch(name):
    raise DataError(f'{name!r} cannot name a dataset: use at most 100 letters, digits, "_", "-" '
                    f'and "." (not first), so that it stays one folder inside the data_dir.')
  return name


def config_name(name: str, resolution: int, channels: int) -> str:
  """The tfds config of a prepared dataset: 'celeba_64', or 'mnist_32_grey' for one channel."""
  return f'{check_name(name)}_{resolution}' + ('_grey' if channels == 1 else '')


def dataset_folder(name: str, resolution: int, channels: int) -> str:
  """The folder of a prepared dataset's versions, relative to its data_dir."""
  return f'{BUILDER_NAME}/{config_name(name, resolution, channels)}'


def augmented_name(name: str, copies: int, seed: int) -> str:
  """The prepared dataset holding `copies` augmented copies of dataset `name` (augment.py)."""
  return f'{name}_augmented{copies}_seed{seed}'


def dataset_dir(data_dir: str, name: str, resolution: int, channels: int) -> str:
  """Where a prepared dataset lives: DATA_DIR/vaegan_images/NAME_R/1.0.0."""
  return os.path.join(data_dir, BUILDER_NAME, config_name(name, resolution, channels), VERSION)
