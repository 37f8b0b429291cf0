"""Where a prepared dataset lives and what its splits are called, shared by the writer
(prepare.py) and the reader (input_pipeline.py); and the error for data that cannot be used.

A prepared dataset is the tfds dataset `vaegan_images/NAME_R` (`NAME_R_grey` with one channel) in
a data_dir, in tfds's own folder layout: DATA_DIR/vaegan_images/NAME_R/VERSION/.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
from etils import epath

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


# The feature classes prepare writes. tfds imports the module of any class a prepared folder's
# JSON names, so a tampered folder (shared between machines, say) could make it import a file
# of that name from the working directory: every other class is refused before tfds reads it.
FEATURE_CLASSES = frozenset(f'tensorflow_datasets.core.features.{name}' for name in (
    'features_dict.FeaturesDict', 'tensor_feature.Tensor', 'text_feature.Text'))
INFO_FILES = ('features.json', 'dataset_info.json')
MAX_INFO_BYTES = 64 * 2**20


def feature_classes(tree: Any) -> set[str]:
  """Every 'pythonClassName' value anywhere in a parsed JSON tree."""
  if isinstance(tree, dict):
    found = {str(tree['pythonClassName'])} if 'pythonClassName' in tree else set()
    return found.union(*(feature_classes(value) for value in tree.values()))
  if isinstance(tree, list):
    return set().union(*(feature_classes(value) for value in tree))
  return set()


def open_builder(path: str) -> Any:
  """tfds's reader of the prepared dataset in `path`, once its JSON files name only the
  feature classes prepare writes; a DataError otherwise."""
  import tensorflow_datasets as tfds    # here: the configs import this module's constants
  for name in INFO_FILES:
    info_file = epath.Path(path, name)
    if not info_file.exists():
      continue
    with info_file.open('rb') as file:
      text = file.read(MAX_INFO_BYTES + 1)
    try:
      others = sorted(feature_classes(json.loads(text)) - FEATURE_CLASSES)
    except ValueError:                    # JSONDecodeError, or over MAX_INFO_BYTES
      others = ['(unreadable JSON)']
    if len(text) > MAX_INFO_BYTES or others:
      raise DataError(f'{info_file} names feature classes that vaegan-prepare never writes '
                      f'({", ".join(others)[:300] or "a file too large"}); it was changed after '
                      f'it was prepared, and was not opened. Prepare the dataset again.')
  return tfds.builder_from_directory(path)


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
