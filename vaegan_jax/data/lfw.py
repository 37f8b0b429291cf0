"""LFW with Kumar et al.'s 73 real-valued attribute scores, as the paper's attribute table used it.

  vaegan-prepare --lfw_dir=~/lfw --resolution=64       # lfw/ (or lfw-deepfunneled/) and
                                                       # lfw_attributes.txt in ~/lfw

The authors' dataset/lfw.py keeps only the images that have an attribute vector, splits by
person (DeepPy's LFW people splits; here View 1's test people, peopleDevTest.txt), crops the
centred 150x150 window of the 250x250 images and resizes it (lfw_aegan.py: crop_size=150).
Their images were first aligned to the mean of 68 landmarks, which needs DeepPy's landmark
files: here [ours] the images are used as LFW ships them (the deep-funneled release is the
aligned one).

lfw_attributes.txt (from Kumar et al.'s attribute classifiers) is tab-separated: comment lines
start with '#', the last of them is the header ('#', person, imagenum, then the 73 attribute
names, some with spaces), and each row is a person's name, the image number and 73 scores.
Attribute names have their spaces replaced by underscores ('Black Hair' -> 'Black_Hair').
"""
from __future__ import annotations

import os
import zlib

import numpy as np
from PIL import Image

from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.data.sources import Example, ImageLimits, Source, read_text

ATTRIBUTE_FILE = 'lfw_attributes.txt'
IMAGE_FOLDERS = ('lfw', 'lfw-deepfunneled', 'lfw_funneled', 'lfw-funneled')
TEST_PEOPLE_FILE = 'peopleDevTest.txt'      # LFW's View 1 test people
TEST_FRACTION = 0.1                          # of the people, by hash, without that file [ours]
WHERE_TO_GET_IT = ('http://vis-www.cs.umass.edu/lfw/ (the images, lfw.tgz or '
                   'lfw-deepfunneled.tgz, extracted; peopleDevTest.txt) and '
                   'https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt')


def image_key(person: str, number: int) -> str:
  """'Aaron Eckhart', 1 -> 'Aaron_Eckhart/Aaron_Eckhart_0001.jpg', LFW's own layout."""
  folder = person.replace(' ', '_')
  return f'{folder}/{folder}_{number:04d}.jpg'


def read_attributes(path: str) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
  """lfw_attributes.txt -> (attribute names, {image key: [A] float32 scores})."""
  header, table = None, {}
  for number, line in enumerate(read_text(path).splitlines(), start=1):
    if not line.strip():
      continue
    if line.startswith('#'):
      columns = [column.strip() for column in line.lstrip('#').split('\t')]
      columns = [column for column in columns if column]
      if columns[:2] == ['person', 'imagenum']:
        header = tuple(name.replace(' ', '_') for name in columns[2:])
      continue
    if header is None:
      raise DataError(f'{path}, line {number}: a data row before the header line ("#\\tperson'
                      f'\\timagenum\\t..."); this is not Kumar et al.\'s lfw_attributes.txt.')
    fields = line.split('\t')
    try:
      person, image_number = fields[0], int(fields[1])
      scores = np.array([float(value) for value in fields[2:]], np.float32)
    except (IndexError, ValueError):
      scores = None
    if scores is None or len(scores) != len(header) or not np.all(np.isfinite(scores)):
      raise DataError(f'{path}, line {number}: expected a name, an image number and '
                      f'{len(header)} scores separated by tabs, got {line[:120]!r}.')
    if not is_plain_name(person) or image_number < 0:
      raise DataError(f'{path}, line {number}: {person[:120]!r} image {image_number} is not a '
                      f'name and number of LFW (a name must not hold "/", "\\" or start with '
                      f'"."); its image would lie outside the image folder. Use Kumar et al.\'s '
                      f'file.')
    key = image_key(person, image_number)
    if key in table:
      raise DataError(f'{path}, line {number}: {person} image {image_number} has a second '
                      f'row; give each image one row.')
    table[key] = scores
  if header is None or not table:
    raise DataError(f'{path} holds no header line ("#\\tperson\\timagenum\\t...") or no rows; '
                    f'it is not Kumar et al.\'s lfw_attributes.txt. Get it from {WHERE_TO_GET_IT}.')
  return header, table


def is_plain_name(person: str) -> bool:
  """A person's name that names one folder inside the image folder: no separator, no dot first
  (so neither '..' nor a hidden folder), no NUL."""
  return (bool(person.strip()) and not any(char in person for char in '/\\\0')
          and not person.startswith('.'))


def read_people(path: str) -> set[str]:
  """LFW's people list (a count, then 'Name<TAB>images' rows) -> the folder names it lists."""
  rows = [line.split() for line in read_text(path).splitlines() if line.strip()]
  return {row[0] for row in rows[1:] if row}


class LFWFiles(Source):
  """LFW's images with their real-valued attribute scores; see the module docstring."""

  def __init__(self, lfw_dir: str, name: str = 'lfw', limits: ImageLimits = ImageLimits()):
    if not os.path.isdir(lfw_dir):
      raise DataError(f'lfw_dir {lfw_dir} is not a folder. Point it at the folder holding the '
                      f'extracted images and {ATTRIBUTE_FILE} ({WHERE_TO_GET_IT}).')
    self.name, self.crop, self.attribute_kind, self.limits = name, 'lfw', 'real', limits
    folders = [os.path.join(lfw_dir, folder) for folder in IMAGE_FOLDERS
               if os.path.isdir(os.path.join(lfw_dir, folder))]
    if not folders:
      raise DataError(f'No LFW image folder ({", ".join(IMAGE_FOLDERS)}) in {lfw_dir}. Extract '
                      f'lfw.tgz or lfw-deepfunneled.tgz there ({WHERE_TO_GET_IT}).')
    self.images_dir = folders[0]
    attributes_path = os.path.join(lfw_dir, ATTRIBUTE_FILE)
    if not os.path.exists(attributes_path):
      raise DataError(f'Missing {attributes_path}: the 73 attribute scores of Kumar et al. '
                      f'({WHERE_TO_GET_IT}).')
    self.attribute_names, attributes = read_attributes(attributes_path)
    missing = sorted(key for key in attributes
                     if not os.path.exists(os.path.join(self.images_dir, key)))
    if missing:
      raise DataError(f'{attributes_path} lists {len(missing)} image(s) that {self.images_dir} '
                      f'lacks, e.g. {missing[0]}. Extract the whole LFW release there.')
    test_people_path = os.path.join(lfw_dir, TEST_PEOPLE_FILE)
    if os.path.exists(test_people_path):
      test_people = read_people(test_people_path)
      split_of = lambda person: 'test' if person in test_people else 'train'
    else:
      split_of = lambda person: ('test' if zlib.crc32(person.encode()) % 10_000
                                 < TEST_FRACTION * 10_000 else 'train')
    # Images without an attribute vector are left out, as the authors' lfw_imgs_split does.
    self.examples = [Example(key, split_of(key.split('/')[0]), attributes[key])
                     for key in sorted(attributes)]

  def load(self, example: Example) -> tuple[Image.Image, np.ndarray]:
    return self.limits.read_file(os.path.join(self.images_dir, example.key)), example.attributes
