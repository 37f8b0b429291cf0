"""Where `prepare` reads images from: CelebA's raw files, a folder of images, or a tfds dataset.

Every source lists its examples up front (name, split, attributes), checked against each
other before anything is decoded, and loads one image at a time as a PIL image. prepare calls
`load` from several threads; file handles open lazily on first use.

Errors a user can act on are `DataError`s: they name the file, what was expected and what to do.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import zipfile
import zlib
from typing import Sequence

import numpy as np
from PIL import Image

from vaegan_jax import files
from vaegan_jax.data import celeba
from vaegan_jax.data.dataset_layout import (DataError, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS,
                                            MAX_TABLE_BYTES, SPLITS)

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')


@dataclasses.dataclass(frozen=True)
class ImageLimits:
  """How large one input image may be: its file (or zip member) in bytes, and its pixels, read
  from the header before anything is decoded. An image past either is listed as corrupt, with
  the flag that raises the limit."""
  max_bytes: int = MAX_IMAGE_BYTES
  max_pixels: int = MAX_IMAGE_PIXELS

  def read_file(self, path: str) -> Image.Image:
    """The decoded image in `path`: only a regular file, read under max_bytes."""
    return self.decode(files.read_regular_file(path, self.max_bytes, '--max_image_bytes'))

  def read_member(self, archive: zipfile.ZipFile, member: str) -> Image.Image:
    """The decoded image in a zip member, whose declared size is checked before it is read."""
    info = archive.getinfo(member)
    if info.file_size > self.max_bytes:
      raise files.UnsafeFile(f'{member} unpacks to {info.file_size:,} bytes, over the limit of '
                             f'{self.max_bytes:,} (raise it with --max_image_bytes); not read.')
    with archive.open(info) as file:
      return self.decode(file.read(self.max_bytes + 1))

  def decode(self, data: bytes) -> Image.Image:
    """Decode fully now (PIL is lazy), so a corrupt file fails here; the pixel count is checked
    from the header first."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width * height > self.max_pixels:
      raise files.UnsafeFile(f'{width}x{height} is {width * height:,} pixels, over the limit of '
                             f'{self.max_pixels:,} (raise it with --max_image_pixels); not '
                             f'decoded.')
    image.load()
    return image


@dataclasses.dataclass(frozen=True)
class Example:
  """One image of a source: `key` addresses it; attributes are [A] bool (or float32 for
  real-valued ones), or None where the source reads them with the image."""
  key: str
  split: str
  attributes: np.ndarray | None


class Source:
  """A list of examples, attribute names, the crop that suits them, and an image loader.
  Attributes are binary ([A] bool) or, where attribute_kind is 'real', [A] float32 scores."""
  name: str
  crop: str
  attribute_names: tuple[str, ...]
  attribute_kind: str = 'binary'
  examples: list[Example]
  limits: ImageLimits = ImageLimits()

  def load(self, example: Example) -> tuple[Image.Image, np.ndarray]:
    """(decoded image, [A] attributes); raises whatever a corrupt image causes."""
    raise NotImplementedError


# ---------------------------------------------------------------- checks on raw files
def read_text(path: str) -> str:
  """A table file's text: a regular file of at most MAX_TABLE_BYTES, and no web page; a
  DataError otherwise."""
  try:
    data = files.read_regular_file(path, MAX_TABLE_BYTES)
  except files.UnsafeFile as error:
    raise DataError(str(error)) from None
  check_not_web_page(path, data[:4096])
  return data.decode('utf-8', 'replace')


def check_not_web_page(path: str, head: bytes | None = None) -> None:
  """A Google Drive quota or virus-scan page saved under the data file's name is a DataError;
  so is a path that is not a regular file."""
  if head is None:
    try:
      head = files.read_head(path, 4096)
    except files.UnsafeFile as error:
      raise DataError(str(error)) from None
  start = head.lstrip().lower()
  if not (start.startswith(b'<!doctype html') or start.startswith(b'<html')):
    return
  title = re.search(rb'<title>(.*?)</title>', head, re.IGNORECASE | re.DOTALL)
  title = title.group(1).decode('utf-8', 'replace').strip() if title else 'no title'
  raise DataError(
      f'{path} is a web page ("{title}"), not the data file: Google Drive sends such a page when '
      f'its download quota is exceeded or when it asks to confirm a virus scan. Download the '
      f'file again (later, or from another mirror: {celeba.WHERE_TO_GET_IT}) and replace this one.')


def find_first(directory: str, candidates: Sequence[str], what: str) -> str:
  """The first of `candidates` that exists in `directory`; a DataError naming them all if none."""
  for candidate in candidates:
    path = os.path.join(directory, candidate)
    if os.path.exists(path):
      return path
  raise DataError(
      f'Missing {what}: expected one of {", ".join(candidates)} in {directory}. '
      f'It comes with {celeba.WHERE_TO_GET_IT}.')


def require_same_names(path: str, listed: Sequence[str], present: Sequence[str],
                       images: str, advice: str) -> None:
  """A DataError naming the first name (in sorted order) that `path` lists without an image in
  `images`, or that has an image there without a row in `path`."""
  listed_set, present_set = set(listed), set(present)
  for name in sorted(listed_set ^ present_set):
    difference = (f'{name} is listed but has no image' if name in listed_set
                  else f'{name} has an image but is not listed')
    raise DataError(f'{path} does not match the images {images}: {difference}. {advice}')


def read_table(path: str, has_header: bool) -> tuple[list[str], list[list[str]]]:
  """A CelebA text table or Kaggle's CSV of it -> (header, rows).

  CelebA's attribute and landmark files start with the row count and a header of column names;
  its partition file is bare rows. The header lists the value columns only; each row is
  [name, values...].
  """
  text = read_text(path)
  if path.endswith('.csv'):
    rows = [row for row in csv.reader(io.StringIO(text, newline='')) if row]
    if not rows:
      raise DataError(f'{path} is empty; it should have a header (path, attribute names...) '
                      f'and one row per image.')
    return rows[0][1:], rows[1:]
  lines = [line.split() for line in text.splitlines() if line.strip()]
  if not has_header:
    return [], lines
  if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
    raise DataError(f'{path} does not start with a row count and a header line as CelebA\'s '
                    f'files do; it is not CelebA\'s file or it is damaged. Download it again.')
  count, header, rows = int(lines[0][0]), lines[1], lines[2:]
  if len(rows) != count:
    raise DataError(f'{path} says it has {count} rows but has {len(rows)}; the file is '
                    f'incomplete. Download it again.')
  return header, rows


BINARY_VALUES = ('1', '-1', '0')


def parse_attribute_rows(path: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                         real_valued: bool = True) -> dict[str, np.ndarray]:
  """Rows of attribute values -> {name: [A] values}; a DataError at the first malformed row.

  Binary tables (every value 1 / -1, or 1 / 0) give bool arrays. A table with any other number
  gives float32 arrays of every value as written (real-valued attributes, such as LFW's
  classifier scores), unless real_valued is False.
  """
  binary = all(value in BINARY_VALUES for row in rows for value in row[1:])
  expected = 'of 1 or -1' if binary or not real_valued else '(numbers)'
  table = {}
  for number, row in enumerate(rows, start=1):
    values = row[1:]
    parsed = None if len(values) != len(header) else (
        np.array([v == '1' for v in values]) if binary else _finite_floats(values))
    if parsed is None or not (binary or real_valued):
      raise DataError(f'{path}, data row {number} ({row[0] if row else "empty"}): expected '
                      f'{len(header)} values {expected}, got {" ".join(values)!r}.')
    if row[0] in table:
      raise DataError(f'{path}, data row {number}: {row[0]} has a second row; give each image '
                      f'one row.')
    table[row[0]] = parsed
  return table


def _finite_floats(values: Sequence[str]) -> np.ndarray | None:
  """float32 values, or None if any is not a finite number."""
  try:
    parsed = np.array([float(value) for value in values], np.float32)
  except ValueError:
    return None
  return parsed if np.all(np.isfinite(parsed)) else None


def attribute_kind(attributes: np.ndarray) -> str:
  """'binary' for bool attributes, 'real' for real-valued ones (see parse_attribute_rows)."""
  return 'binary' if attributes.dtype == np.bool_ else 'real'


# ---------------------------------------------------------------- CelebA's raw files
class CelebAFiles(Source):
  """CelebA's raw release in `raw_dir`: the images (zip or folder), attributes and partition."""

  def __init__(self, raw_dir: str, name: str = 'celeba', limits: ImageLimits = ImageLimits()):
    if not os.path.isdir(raw_dir):
      raise DataError(f'raw_dir {raw_dir} is not a folder. Point it at the folder holding '
                      f'img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt.')
    self.name, self.crop, self.limits = name, 'celeba', limits
    self.images_path = find_first(raw_dir, celeba.IMAGES, 'the images')
    attributes_path = find_first(raw_dir, celeba.ATTRIBUTE_FILES, 'the attribute file')
    partition_path = find_first(raw_dir, celeba.PARTITION_FILES, 'the partition file')
    image_names = self._image_names()

    header, rows = read_table(attributes_path, has_header=True)
    attributes = parse_attribute_rows(attributes_path, header, rows, real_valued=False)
    _, partition_rows = read_table(partition_path, has_header=False)
    partition = {}
    for row in partition_rows:
      if len(row) != 2 or row[1] not in celeba.PARTITIONS:
        raise DataError(f'{partition_path}: expected "name 0|1|2" rows, got {" ".join(row)!r}.')
      if row[0] in partition:
        raise DataError(f'{partition_path}: {row[0]} is listed twice; give each image one row.')
      partition[row[0]] = celeba.PARTITIONS[row[1]]
    for path, listed in ((attributes_path, attributes), (partition_path, partition)):
      require_same_names(path, list(listed), image_names, f'in {self.images_path}',
                         'The files come from different releases or one is incomplete; use '
                         'the five files of one download.')
    self.attribute_names = tuple(header)
    self.examples = [Example(name, partition[name], attributes[name]) for name in image_names]

  def _image_names(self) -> list[str]:
    if os.path.isdir(self.images_path):
      return sorted(name for name in os.listdir(self.images_path)
                    if name.lower().endswith('.jpg') and not is_resource_fork(name))
    check_not_web_page(self.images_path)
    try:
      with zipfile.ZipFile(self.images_path) as archive:
        members = [member for member in archive.namelist()
                   if member.lower().endswith('.jpg') and not is_resource_fork(member)]
    except zipfile.BadZipFile as error:
      raise DataError(f'{self.images_path} is not a readable zip ({error}); the download is '
                      f'incomplete or damaged. Download it again.') from error
    self._members = {}
    for member in members:
      first = self._members.setdefault(os.path.basename(member), member)
      if first != member:
        raise DataError(f'{self.images_path} holds two images named '
                        f'{os.path.basename(member)} ({first} and {member}), so which one it '
                        f'names is ambiguous. Use the zip of one CelebA download.')
    return sorted(self._members)

  def load(self, example: Example) -> tuple[Image.Image, np.ndarray]:
    if os.path.isdir(self.images_path):
      return self.limits.read_file(os.path.join(self.images_path, example.key)), \
          example.attributes
    if getattr(self, '_archive', None) is None:
      self._archive = zipfile.ZipFile(self.images_path)
    return self.limits.read_member(self._archive, self._members[example.key]), example.attributes


def is_resource_fork(path: str) -> bool:
  """macOS's zip metadata (__MACOSX/... and ._NAME files): not images, whatever the suffix."""
  return '__MACOSX' in path.split('/') or os.path.basename(path).startswith('._')


# ---------------------------------------------------------------- a folder of images
# Top-level subfolders that name a split, as exported datasets lay them out.
SPLIT_FOLDERS = {'train': 'train', 'training': 'train', 'val': 'validation',
                 'valid': 'validation', 'validation': 'validation', 'test': 'test'}
SPLIT_BY = ('auto', 'folder', 'hash')


def split_folders(root: str) -> dict[str, str]:
  """{subfolder: split} for the top-level subfolders of `root` that name a split."""
  return {name: SPLIT_FOLDERS[name.lower()] for name in os.listdir(root)
          if name.lower() in SPLIT_FOLDERS and os.path.isdir(os.path.join(root, name))}


class ImageFolder(Source):
  """Every image under `root` (recursively), optionally with a CSV of attributes.

  The CSV's first column is the path relative to `root`, the others are attributes: binary
  (1 / -1 or 1 / 0), or real-valued where any value is another number. The splits:
  split_by='folder' takes them from top-level subfolders named train (or training), val /
  valid / validation and test, and every image must be in one; 'hash' holds
  out a stable `test_fraction` of the images by a hash of the path; 'auto' (the default) is
  'folder' when `root` has a train subfolder and a test or validation one, else 'hash'.
  """

  def __init__(self, root: str, attributes_csv: str | None = None, test_fraction: float = 0.05,
               name: str | None = None, split_by: str = 'auto',
               limits: ImageLimits = ImageLimits()):
    if not os.path.isdir(root):
      raise DataError(f'Image folder {root} does not exist or is not a folder.')
    if split_by not in SPLIT_BY:
      raise DataError(f'split_by={split_by!r}: choose one of {", ".join(SPLIT_BY)}.')
    if not 0 <= test_fraction < 1:      # 0: all in train (prepare's flag asks for more than 0)
      raise DataError(f'test_fraction={test_fraction} must lie in [0, 1) (the share of images '
                      f'held out for testing, e.g. 0.05).')
    self.root, self.crop, self.limits = root, 'centre', limits
    self.name = name or os.path.basename(os.path.normpath(root))
    paths = sorted(
        os.path.relpath(os.path.join(folder, file), root).replace(os.sep, '/')
        for folder, _, files in os.walk(root) for file in files
        if file.lower().endswith(IMAGE_SUFFIXES)
        and not is_resource_fork(os.path.relpath(os.path.join(folder, file), root)))
    if not paths:
      raise DataError(f'No images ({", ".join(IMAGE_SUFFIXES)}) under {root}.')
    attributes, self.attribute_names = {}, ()
    if attributes_csv:
      if not os.path.exists(attributes_csv):
        raise DataError(f'Attribute file {attributes_csv} does not exist. It should be a CSV '
                        f'with a header (path, attribute names...) and one row per image.')
      header, rows = read_table(attributes_csv, has_header=True)
      attributes = parse_attribute_rows(attributes_csv, header, rows)
      require_same_names(attributes_csv, list(attributes), paths, f'under {root}',
                         'Give every image one row, named by its path relative to the folder.')
      self.attribute_names = tuple(header)
      self.attribute_kind = attribute_kind(next(iter(attributes.values())))
    folders = split_folders(root)
    by_folder = split_by == 'folder' or (
        split_by == 'auto' and 'train' in folders.values() and len(set(folders.values())) > 1)
    if by_folder:
      outside = [path for path in paths if path.split('/')[0] not in folders]
      if outside or not folders:
        raise DataError(
            f'split_by=folder: {len(outside) or len(paths)} image(s) under {root} are in no '
            f'split folder (train, val or validation, test), e.g. '
            f'{(outside or paths)[0]}. Move them, or split by hash (--split_by=hash).')
      split_of = lambda path: folders[path.split('/')[0]]
    else:
      split_of = lambda path: test_split(path, test_fraction)
    self.split_by = 'folder' if by_folder else 'hash'
    empty = np.zeros(0, bool)
    self.examples = [Example(path, split_of(path), attributes.get(path, empty))
                     for path in paths]

  def load(self, example: Example) -> tuple[Image.Image, np.ndarray]:
    return self.limits.read_file(os.path.join(self.root, example.key)), example.attributes


def test_split(key: str, test_fraction: float) -> str:
  """'test' for a stable fraction of keys, by hash, so adding images moves none of the others."""
  return 'test' if zlib.crc32(key.encode()) % 10_000 < test_fraction * 10_000 else 'train'


# ---------------------------------------------------------------- a prepared tfds dataset
class TfdsDataset(Source):
  """A tfds image dataset already prepared (array_record) in `data_dir`, e.g. celeb_a or mnist.

  Its 'image' feature is used, and a dict of boolean 'attributes' where it has one (celeb_a).
  """

  def __init__(self, dataset: str, data_dir: str | None, name: str | None = None):
    self.dataset, self.data_dir = dataset, data_dir
    self.name = name or re.sub(r'\W', '_', dataset.split(':')[0].split('/')[0])
    self.crop = 'celeba' if dataset.startswith('celeb_a') else 'centre'
    sources = self._open()
    self.attribute_names = self._attribute_names(sources)
    self.examples = []
    for split in SPLITS:
      if split not in sources:
        continue
      for index in range(len(sources[split])):
        self.examples.append(Example(f'{split}/{index}', split, None))

  def _open(self):
    import tensorflow_datasets as tfds   # only this source needs tfds
    try:
      return tfds.data_source(self.dataset, data_dir=self.data_dir)
    except Exception as error:   # tfds raises several types here; all mean the same to a user
      raise DataError(
          f'Cannot read the tfds dataset {self.dataset!r} from data_dir {self.data_dir}: '
          f'{type(error).__name__}: {error}. It must be prepared there in the array_record '
          f'format (tfds.builder(name, data_dir=..., file_format="array_record")'
          f'.download_and_prepare(), which needs TensorFlow), or use its raw files with '
          f'--raw_dir.') from error

  @staticmethod
  def _attribute_names(sources) -> tuple[str, ...]:
    features = next(iter(sources.values())).dataset_info.features
    if 'image' not in features:
      raise DataError(f'The tfds dataset has no "image" feature (it has {list(features)}).')
    if 'attributes' not in features:
      return ()
    return tuple(sorted(features['attributes'].keys()))

  def load(self, example: Example) -> tuple[Image.Image, np.ndarray]:
    if getattr(self, '_sources', None) is None:
      self._sources = self._open()
    split, index = example.key.split('/')
    record = self._sources[split][int(index)]
    pixels = np.asarray(record['image'])
    attributes = np.array([bool(record['attributes'][name]) for name in self.attribute_names])
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels), attributes
