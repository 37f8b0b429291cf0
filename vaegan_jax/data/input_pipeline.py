"""Training input: a prepared dataset -> shuffled uint8 batches for this process's devices.

Batches are defined globally and then cut per process, so every process count sees the same
global batches: global batch b is the b-th run of `global_batch_size` indices of an endless
sequence of epochs, each shuffled afresh from the seed; process p of P takes the p-th of P equal
slices of it, reads only those records, and reshapes them to [local devices, per-device batch,
R, R, C]. Over an epoch the processes read disjoint parts that together cover every example.

Each epoch is a fresh numpy permutation of the examples drawn from (seed, epoch), so batch b is
a pure function of (seed, b): a restored iterator starts at its saved batch at once, with no
replay. grain runs the loading: a pool of threads that read batches ahead, in order, passing
any error on. Records are read from the array_record shards tfds wrote, one batched read per shard,
and parsed here: the images are raw bytes, so this is several times faster than tfds's generic
per-feature decoding, and about twice as fast as tfds's data source, which starts a thread pool on
every read.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import os
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
from array_record.python import array_record_module
from etils import epath
from tensorflow_datasets.proto import tf_example_pb2

from vaegan_jax import console
from vaegan_jax.data import dataset_layout, prepared_documents, preprocess
from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.sharding import device_sharding

Batch = dict[str, np.ndarray]


class ShardedRecords:
  """Random access to the records of array_record shards (those of one or more splits).

  read(indices) groups the indices by shard and makes one batched read per shard. Readers open
  lazily, one set per thread: an ArrayRecordReader is not safe to share between threads.
  """

  def __init__(self, shards: Sequence[tuple[str, int]]):
    """shards: (file, records) of each shard, in order."""
    self._paths = [path for path, _ in shards]
    counts = np.array([count for _, count in shards], np.int64)
    self._starts = np.concatenate([[0], np.cumsum(counts)])
    self._local = threading.local()

  def __len__(self) -> int:
    return int(self._starts[-1])

  def _reader(self, shard: int) -> Any:
    readers = self._local.__dict__.setdefault('readers', {})
    if shard not in readers:
      readers[shard] = array_record_module.ArrayRecordReader(
          self._paths[shard], 'readahead_buffer_size:0', file_reader_buffer_size=32768)
    return readers[shard]

  def read(self, indices: np.ndarray) -> list[bytes]:
    """The serialized records at `indices` (any order, repeats allowed), in that order.

    Reads go in file order, one batched read per shard: about 30% faster than in batch order.
    """
    indices = np.asarray(indices, np.int64)
    if not indices.size:
      return []
    if indices.min() < 0 or indices.max() >= len(self):
      raise IndexError(f'Record indices must lie in [0, {len(self)}).')
    order = np.argsort(indices, kind='stable')
    shards = np.searchsorted(self._starts, indices[order], side='right') - 1
    cuts = np.flatnonzero(np.diff(shards)) + 1
    records: list[bytes] = [b''] * len(indices)
    for rows, shard in zip(np.split(order, cuts), shards[np.concatenate([[0], cuts])]):
      positions = indices[rows] - self._starts[shard]
      for row, record in zip(rows, self._reader(shard).read(positions.tolist())):
        records[row] = record
    return records


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
  """A prepared split (or '+'-joined splits): its records, image shape (R, R, C) and the names of
  its [A] attribute columns."""
  records: ShardedRecords
  image_shape: tuple[int, int, int]
  attribute_names: tuple[str, ...]
  path: str
  split: str
  attribute_kind: str = 'binary'      # or 'real' (dataset_layout.ATTRIBUTE_DTYPES)

  def __len__(self) -> int:
    return len(self.records)

  def read(self, indices: Sequence[int]) -> Batch:
    """{'image': [N, R, R, C] uint8, 'attributes': [N, A] bool (float32 where real-valued)} of
    the given records."""
    return decode_records(self.records.read(indices), self.image_shape,
                          len(self.attribute_names),
                          dataset_layout.ATTRIBUTE_DTYPES[self.attribute_kind])


def decode_records(records: Sequence[bytes], image_shape: tuple[int, ...], num_attributes: int,
                   attribute_dtype: Any = np.bool_) -> Batch:
  """Serialized examples written by `prepare` -> stacked image and attribute arrays."""
  images = np.empty((len(records), *image_shape), np.uint8)
  attributes = np.empty((len(records), num_attributes), attribute_dtype)
  for row, record in enumerate(records):
    feature = tf_example_pb2.Example.FromString(record).features.feature
    images[row] = np.frombuffer(feature['image'].bytes_list.value[0], np.uint8
                                ).reshape(image_shape)
    attributes[row] = np.frombuffer(feature['attributes'].bytes_list.value[0], attribute_dtype)
  return {'image': images, 'attributes': attributes}


def open_prepared(data_dir: str, name: str, resolution: int, channels: int, split: str
                  ) -> PreparedSplit:
  """The prepared dataset NAME at this resolution; a DataError saying how to prepare it if absent.
  """
  path = dataset_layout.dataset_dir(data_dir, name, resolution, channels)
  # epath, as tfds uses: a gs:// data_dir works where gcsfs is installed (array_record reads
  # gs:// itself).
  if not epath.Path(path, 'dataset_info.json').exists():
    builder_dir = epath.Path(data_dir, dataset_layout.BUILDER_NAME)
    found = sorted(entry.name for entry in builder_dir.iterdir()) if builder_dir.is_dir() else []
    raise DataError(
        f'No prepared dataset {dataset_layout.config_name(name, resolution, channels)} in {data_dir} '
        f'(expected {path}; found: {", ".join(found) or "none"}). Prepare it once with '
        f'`{console.command("vaegan-prepare")} --raw_dir=CELEBA_FILES --data_dir={data_dir} '
        f'--name={name} '
        f'--resolution={resolution}` (or --image_folder / --tfds_name).')
  prepared = prepared_documents.read(path)
  parts = split.split('+')
  missing = [part for part in parts if part not in prepared.shards]
  if missing:
    raise DataError(f'{path} has no split {", ".join(missing)}; it has '
                    f'{", ".join(prepared.shards)}. Set the config\'s data split accordingly.')
  return PreparedSplit(
      records=ShardedRecords([shard for part in parts for shard in prepared.shards[part]]),
      path=path, split=split, image_shape=prepared.image_shape,
      attribute_names=prepared.attribute_names, attribute_kind=prepared.attribute_kind)


def open_configured(config: Any, split: str, data_dir: str | None = None) -> PreparedSplit:
  """`split` of the dataset a training config names (data.name at model.resolution and
  model.image_channels), in data_dir (default: the config's data.data_dir)."""
  return open_prepared(os.path.expanduser(data_dir or config.data.data_dir), config.data.name,
                       config.model.resolution, config.model.image_channels, split)


def open_training_split(config: Any) -> PreparedSplit:
  """What a training config trains on: data.train_split, or with data.augmented_copies the
  prepared augmented copies of it (augment.py)."""
  data = config.data
  if not data.augmented_copies:
    return open_configured(config, data.train_split)
  data_dir = os.path.expanduser(data.data_dir)
  name = dataset_layout.augmented_name(data.name, data.augmented_copies, data.augment_seed)
  resolution, channels = config.model.resolution, config.model.image_channels
  if not epath.Path(dataset_layout.dataset_dir(data_dir, name, resolution, channels),
                    'dataset_info.json').exists():
    raise DataError(
        f'No prepared augmented copies {dataset_layout.config_name(name, resolution, channels)} '
        f'in {data_dir}. Make them once with `{console.command("vaegan-prepare")} '
        f'--raw_dir=CELEBA_FILES '
        f'--data_dir={data_dir} --name={data.name} --resolution={resolution} '
        f'--augmented_copies={data.augmented_copies} --augment_seed={data.augment_seed}`, or set '
        f'data.raw_dir to make them on first use, or train without them: '
        f'--config.data.augmented_copies=0.')
  return open_prepared(data_dir, name, resolution, channels, 'train')


def process_slice(global_batch_size: int, process_index: int, process_count: int) -> slice:
  """This process's part of a global batch (configs/schema.py checks that it splits evenly)."""
  size = global_batch_size // process_count
  return slice(process_index * size, (process_index + 1) * size)


def flip_flags(seed: int, batch_index: int, global_batch_size: int, mode: str) -> np.ndarray:
  """[G] bool: which examples of global batch b to mirror; 'batch' flips all or none (the
  authors' code), 'example' each independently, 'none' never."""
  if mode == 'none':
    return np.zeros(global_batch_size, bool)
  draws = np.random.default_rng([seed, batch_index]).random(global_batch_size)
  return np.full(global_batch_size, draws[0] < 0.5) if mode == 'batch' else draws < 0.5


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """[N] the order of epoch `epoch`: a fresh permutation per (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def global_batch_indices(seed: int, batch_index: int, global_batch_size: int,
                         num_examples: int, order: str = 'shuffled') -> np.ndarray:
  """[G] example indices of global batch b: positions b*G .. b*G+G-1 of the endless sequence
  of epochs (a batch may straddle two epochs). 'shuffled' [ours] permutes each epoch afresh;
  'sequential' keeps record order, as the authors' code reads its augmented copies
  (dataset/augment.py, AugmentedInput.batches)."""
  positions = np.arange(batch_index * global_batch_size, (batch_index + 1) * global_batch_size)
  epochs, offsets = np.divmod(positions, num_examples)
  if order == 'sequential':
    return offsets
  return np.concatenate([epoch_permutation(seed, int(epoch), num_examples)[offsets[epochs == epoch]]
                         for epoch in np.unique(epochs)])


def training_batches(split: PreparedSplit, *, seed: int, global_batch_size: int,
                     local_devices: int, flip: str = 'none', order: str = 'shuffled',
                     process_index: int = 0, process_count: int = 1) -> Callable[[int], Batch]:
  """A function of b: this process's part of global batch b, {'image': [D, B, R, R, C] uint8,
  'attributes': [D, B, A] bool, 'flip': [D, B] bool}, with D = local_devices and B the
  per-device batch. The flips are applied on the device (`to_model_input`): mirroring on the
  host costs more than reading the record."""
  if len(split) < global_batch_size:
    raise DataError(f'{split.path} ({split.split}) has {len(split)} examples, fewer than '
                    f'one global batch of {global_batch_size}.')
  mine = process_slice(global_batch_size, process_index, process_count)
  local_batch = mine.stop - mine.start

  def load(batch_index: int) -> Batch:
    indices = global_batch_indices(seed, batch_index, global_batch_size, len(split), order)
    batch = split.read(indices[mine])
    batch['flip'] = flip_flags(seed, batch_index, global_batch_size, flip)[mine]
    return {name: value.reshape(local_devices, local_batch // local_devices, *value.shape[1:])
            for name, value in batch.items()}
  return load


def eval_batches(split: PreparedSplit, *, global_batch_size: int, local_devices: int,
                 process_index: int = 0, process_count: int = 1, max_batches: int | None = None
                 ) -> Iterator[Batch]:
  """One pass over the split in record order, in whole global batches (a remainder is left out)."""
  mine = process_slice(global_batch_size, process_index, process_count)
  count = len(split) // global_batch_size
  for batch_index in range(count if max_batches is None else min(count, max_batches)):
    indices = np.arange(global_batch_size) + batch_index * global_batch_size
    batch = split.read(indices[mine])
    yield {name: value.reshape(local_devices, (mine.stop - mine.start) // local_devices,
                               *value.shape[1:])             # not -1: attributes may be [n, 0]
           for name, value in batch.items()}


def eval_inputs(split: PreparedSplit, *, global_batch_size: int, devices: Sequence[jax.Device],
                condition_columns: tuple[int, ...] = (), process_index: int = 0,
                process_count: int = 1, max_batches: int | None = None
                ) -> Iterator[dict[str, jax.Array]]:
  """`eval_batches` as model input on `devices`, as TrainingIterator gives training batches."""
  sharding = device_sharding(devices)
  for batch in eval_batches(split, global_batch_size=global_batch_size,
                            local_devices=len(devices), process_index=process_index,
                            process_count=process_count, max_batches=max_batches):
    yield to_model_input(to_devices(batch, sharding), condition_columns)


class TrainingIterator:
  """Batches load(b), b = 0, 1, ..., read ahead by grain's threads and placed on the devices as
  model input ({'image': [D, B, R, R, C] float32 in [-1, 1], flipped; 'attributes'; with
  condition_columns, a conditional model's 'condition'}); with devices=None, the host batches as
  `load` returns them.

  get_state() / set_state() hold the index of the next global batch: saved with a checkpoint,
  a restored run reads exactly the batches the uninterrupted run would have read.
  """

  def __init__(self, load: Callable[[int], Batch], devices: Sequence[jax.Device] | None,
               threads: int = 2, host_prefetch: int = 4, device_prefetch: int = 2,
               condition_columns: tuple[int, ...] = ()):
    self._load = load
    self._condition_columns = condition_columns
    self._sharding = None if devices is None else device_sharding(devices)
    self._read_options = grain.ReadOptions(num_threads=threads,
                                           prefetch_buffer_size=host_prefetch)
    self._device_prefetch = device_prefetch
    self._start(0)

  def _start(self, next_batch: int) -> None:
    """Position at `next_batch`; grain's readers start with the first __next__, so a position
    set right after construction (a restore) reads nothing twice."""
    self._host: Iterator[Batch] | None = None
    self._next_batch = next_batch
    self._on_device: collections.deque = collections.deque()

  def _next_host_batch(self) -> Batch:
    if self._host is None:
      batches = grain.MapDataset.range(self._next_batch, sys.maxsize).map(self._load)
      self._host = iter(batches.to_iter_dataset(self._read_options))
    return next(self._host)

  def get_state(self) -> dict[str, int]:
    return {'next_batch': self._next_batch}

  def set_state(self, state: dict[str, int]) -> None:
    self._start(int(state['next_batch']))

  def __iter__(self) -> TrainingIterator:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    if self._sharding is None:
      batch = self._next_host_batch()
      self._next_batch += 1
      return batch
    while len(self._on_device) < self._device_prefetch:
      self._on_device.append(to_model_input(to_devices(self._next_host_batch(), self._sharding),
                                            self._condition_columns))
    self._next_batch += 1
    return self._on_device.popleft()


def to_devices(batch: Batch, sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
  """[D, ...] host arrays -> device arrays laid out by `sharding` (see device_sharding).

  device_put returns at once and copies in the background, which is what prefetching needs.
  """
  return {name: jax.device_put(value, sharding) for name, value in batch.items()}


@functools.partial(jax.jit, static_argnums=1)
def to_model_input(batch: dict[str, jax.Array], condition_columns: tuple[int, ...] = ()
                   ) -> dict[str, jax.Array]:
  """On the devices: uint8 images -> float32 in [-1, 1], mirrored left to right where 'flip'
  (which is consumed); with condition_columns, also a conditional model's 'condition' from
  'attributes' (`conditions_of`); other entries pass through."""
  batch = dict(batch)
  image, flip = batch['image'], batch.pop('flip', None)
  if flip is not None:
    image = jnp.where(flip[..., None, None, None], image[..., ::-1, :], image)
  batch['image'] = preprocess.to_model_range(image)
  if condition_columns:
    batch['condition'] = conditions_of(batch['attributes'], condition_columns)
  return batch


def condition_columns(attribute_names: Sequence[str], condition_on: Sequence[str]
                      ) -> tuple[int, ...]:
  """The dataset's attribute columns of a conditional model's y, in config order; () when
  `condition_on` is empty. Raises DataError naming any attribute the dataset lacks."""
  missing = [name for name in condition_on if name not in attribute_names]
  if missing:
    raise DataError(
        f'model.condition_on names {missing}, which this dataset does not have. Its attributes: '
        f'{", ".join(attribute_names) or "none"}.')
  return tuple(list(attribute_names).index(name) for name in condition_on)


def conditions_of(attributes: jax.Array, columns: Sequence[int]) -> jax.Array:
  """attributes [..., A] -> a conditional model's y [..., len(columns)], float32: bool ones in
  {-1, +1} (the coding of Attribute2Image, so 'absent' is a signal, not a zero input),
  real-valued ones as they are (LFW's attribute scores, as the authors fed them)."""
  chosen = jnp.asarray(attributes)[..., jnp.asarray(columns)]
  if chosen.dtype == jnp.bool_:
    return jnp.where(chosen, 1.0, -1.0).astype(jnp.float32)
  return chosen.astype(jnp.float32)
