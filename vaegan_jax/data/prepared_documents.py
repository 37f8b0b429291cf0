"""A prepared dataset's three JSON documents, read and checked whole, without tfds (SECURITY.md).

tfds writes a prepared dataset (prepare.py), but never reads one here: tfds imports the module
of any feature class its JSON names, by any of several spellings, so a tampered folder could make
it run a file from the working directory. The reader takes from the documents only what it needs
(the image shape, the attributes, each split's shards and their lengths), and checks each whole:
- features.json must equal, as parsed JSON, the document prepare writes for its image shape and
  attributes (`features_document`): nothing in it is data-dependent, so no class, spelled any
  way, can get through;
- dataset_info.json may hold only its known keys; every field that names code or a path (the
  builder, its module, the file format, the shards' file template) has its one fixed value, and
  every number a range;
- metadata.json's attribute names must be distinct short strings, one per attribute column.

Datasets prepared before the package moved (module vaegan_jax.prepare) still open.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from etils import epath

from vaegan_jax import files
from vaegan_jax.data import preprocess
from vaegan_jax.data.dataset_layout import BUILDER_NAME, SPLITS, VERSION, DataError

MAX_DOCUMENT_BYTES = 64 * 2**20
MAX_RESOLUTION = 1024
MAX_ATTRIBUTES = 10_000
MAX_SHARDS = 100_000
MAX_RECORDS = 10**9
FILE_FORMAT = 'array_record'
FILE_TEMPLATE = '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}'
# prepare's module as tfds records it: run as vaegan-prepare, as `python -m` (__main__), and as
# it was named before the package moved. None is imported here; the value is fixed all the same.
MODULES = ('vaegan_jax.data.prepare', '__main__', 'vaegan_jax.prepare')
INFO_KEYS = frozenset({'configName', 'description', 'disableShuffling', 'fileFormat',
                       'moduleName', 'name', 'splits', 'version', 'releaseNotes', 'citation',
                       'downloadSize', 'datasetSize'})
SPLIT_KEYS = frozenset({'name', 'numBytes', 'shardLengths', 'filepathTemplate'})
ATTRIBUTE_TYPES = {'bool': 'binary', 'float32': 'real'}
TENSOR = 'tensorflow_datasets.core.features.tensor_feature.Tensor'


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
  """What the reader takes from a prepared dataset's documents."""
  path: str
  image_shape: tuple[int, int, int]
  attribute_names: tuple[str, ...]
  attribute_kind: str                         # 'binary' or 'real'
  shards: dict[str, tuple[tuple[str, int], ...]]      # split -> ((shard file, records), ...)
  skipped_corrupt: tuple[str, ...]
  crop: str = 'centre'                        # preprocess.CROPS: the window prepare cut


def features_document(image_shape: tuple[int, int, int], attribute_count: int,
                      attribute_kind: str) -> dict[str, Any]:
  """features.json as prepare writes it (tfds's FeaturesDict of an image, attributes and a
  name), parsed."""
  tensor = lambda dtype, dimensions: {'pythonClassName': TENSOR, 'tensor': {
      'dtype': dtype, 'encoding': 'bytes', 'shape': {'dimensions': [str(d) for d in dimensions]}}}
  attribute_dtype = {kind: dtype for dtype, kind in ATTRIBUTE_TYPES.items()}[attribute_kind]
  return {'featuresDict': {'features': {
      'attributes': tensor(attribute_dtype, [attribute_count]),
      'image': tensor('uint8', image_shape),
      'name': {'pythonClassName': 'tensorflow_datasets.core.features.text_feature.Text',
               'text': {}}}},
      'pythonClassName': 'tensorflow_datasets.core.features.features_dict.FeaturesDict'}


def read_document(path: str) -> Any:
  """A JSON document, parsed: a regular file (or a gs:// object) of at most 64 MiB."""
  try:
    if path.startswith('gs://'):
      with epath.Path(path).open('rb') as file:
        text = file.read(MAX_DOCUMENT_BYTES + 1)
      if len(text) > MAX_DOCUMENT_BYTES:
        raise files.UnsafeFile(f'{path} has more than {MAX_DOCUMENT_BYTES:,} bytes; not read.')
    else:
      text = files.read_regular_file(path, MAX_DOCUMENT_BYTES)
    return json.loads(text)
  except (files.UnsafeFile, OSError, ValueError, RecursionError) as error:
    raise tampered(path, f'it cannot be read as JSON ({type(error).__name__})') from None


def tampered(path: str, problem: str) -> DataError:
  return DataError(f'{path} was not opened: {problem}. It is not what vaegan-prepare writes '
                   f'(changed or damaged after it was prepared); prepare the dataset again.')


def _count(value: Any, most: int) -> int | None:
  """A JSON count (tfds writes int64 as decimal strings) in [0, most], or None."""
  if isinstance(value, bool) or not isinstance(value, (int, str)):
    return None
  text = str(value)
  if not text.isdigit() or len(text) > 12 or int(text) > most:
    return None
  return int(text)


def _features(path: str) -> tuple[tuple[int, int, int], int, str]:
  """(image shape, attribute count, attribute kind) of features.json, once it is known to be
  exactly the document prepare writes for them."""
  document = read_document(path)
  try:
    features = document['featuresDict']['features']
    shape = tuple(_count(d, MAX_RESOLUTION) for d in features['image']['tensor']['shape'][
        'dimensions'])
    count = _count(features['attributes']['tensor']['shape']['dimensions'][0], MAX_ATTRIBUTES)
    kind = ATTRIBUTE_TYPES.get(features['attributes']['tensor']['dtype'])
  except (KeyError, TypeError, IndexError, AttributeError):
    raise tampered(path, 'it lacks the image and attribute features') from None
  if (len(shape) != 3 or None in shape or shape[0] != shape[1] or shape[2] not in (1, 3)
      or count is None or kind is None
      or document != features_document(shape, count, kind)):
    raise tampered(path, 'it is not the feature document prepare writes (it names other '
                         'features, classes or fields)')
  return shape, count, kind


def _shards(path: str, folder: str) -> dict[str, tuple[tuple[str, int], ...]]:
  """{split: ((shard file, records), ...)} of dataset_info.json, once its every key and value is
  one prepare writes."""
  info = read_document(path)
  if not isinstance(info, dict) or not set(info) <= INFO_KEYS:
    others = sorted(set(info) - INFO_KEYS)[:5] if isinstance(info, dict) else ['(not an object)']
    raise tampered(path, f'it holds keys prepare never writes ({", ".join(map(str, others))})')
  fixed = {'name': (BUILDER_NAME,), 'moduleName': MODULES, 'fileFormat': (FILE_FORMAT,),
           'version': (VERSION,), 'configName': (os.path.basename(os.path.dirname(folder)),)}
  for key, allowed in fixed.items():
    if info.get(key, allowed[0]) not in allowed:
      raise tampered(path, f'its {key} is not {" or ".join(allowed)}')
  splits = info.get('splits')
  if not isinstance(splits, list) or not 1 <= len(splits) <= len(SPLITS):
    raise tampered(path, 'its splits are not a list of the splits prepare writes')
  shards = {}
  for split in splits:
    name = split.get('name') if isinstance(split, dict) else None
    if (name not in SPLITS or name in shards or not set(split) <= SPLIT_KEYS
        or split.get('filepathTemplate', FILE_TEMPLATE) != FILE_TEMPLATE):
      raise tampered(path, 'a split is not one prepare writes (its name, keys or file template)')
    lengths = split.get('shardLengths', [])
    counts = ([_count(length, MAX_RECORDS) for length in lengths]
              if isinstance(lengths, list) and len(lengths) <= MAX_SHARDS else [None])
    if None in counts or sum(counts) > MAX_RECORDS:
      raise tampered(path, f'the shard lengths of split {name} are not counts of records')
    shards[name] = tuple(
        (os.path.join(folder, f'{BUILDER_NAME}-{name}.{FILE_FORMAT}-{index:05d}-of-'
                              f'{len(counts):05d}'), count) for index, count in enumerate(counts))
  return shards


def _metadata(path: str, attribute_count: int
              ) -> tuple[tuple[str, ...], tuple[str, ...], str]:
  """(attribute names, skipped corrupt images, crop) of metadata.json."""
  metadata = read_document(path)
  names = metadata.get('attribute_names') if isinstance(metadata, dict) else None
  if (not isinstance(names, list) or len(names) != attribute_count
      or not all(isinstance(name, str) and 0 < len(name) <= 200 for name in names)
      or len(set(names)) != len(names)):
    raise tampered(path, f'its attribute_names are not {attribute_count} distinct names')
  skipped = metadata.get('skipped_corrupt', [])
  if not isinstance(skipped, list) or not all(isinstance(entry, str) for entry in skipped):
    raise tampered(path, 'its skipped_corrupt is not a list of file names')
  crop = metadata.get('crop', 'centre')
  if crop not in preprocess.CROPS:
    raise tampered(path, f'its crop is not one of {", ".join(preprocess.CROPS)}')
  return tuple(names), tuple(skipped), crop


def read(folder: str) -> PreparedDataset:
  """The prepared dataset in `folder` (DATA_DIR/vaegan_images/NAME_R/VERSION); DataError, one
  line naming the document, where any of the three is not what prepare writes."""
  shape, count, kind = _features(os.path.join(folder, 'features.json'))
  shards = _shards(os.path.join(folder, 'dataset_info.json'), folder)
  names, skipped, crop = _metadata(os.path.join(folder, 'metadata.json'), count)
  return PreparedDataset(path=folder, image_shape=shape, attribute_names=names,
                         attribute_kind=kind, shards=shards, skipped_corrupt=skipped, crop=crop)
