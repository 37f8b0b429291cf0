"""Reading a PyTorch state dict (.pth) into numpy arrays, without torch, from a hostile file.

torch.save writes one of two layouts, and both are read here:
- the zip layout (torch >= 1.6): ARCHIVE/data.pkl is a pickle whose tensors name their storages
  by persistent ids ('storage', storage class, key, location, numel); ARCHIVE/data/KEY holds
  each storage's raw bytes, in the order ARCHIVE/byteorder names (little when absent);
- the legacy layout: consecutive pickles (a magic number, the protocol version, system info with
  'little_endian', the object with the same persistent ids, the list of storage keys), then each
  storage as an int64 element count followed by its raw bytes, in the order of that list.

A tensor is rebuilt by torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), read
here as a strided view of the storage and then copied.

What makes it safe to call on any file:
- every pickle of both layouts goes through one restricted unpickler: only plain containers,
  OrderedDict, the two rebuild functions and the storage classes; anything else is refused, so
  a .pth file cannot run code;
- before it is unpickled, each pickle's opcodes are read and the work they ask for counted
  (pickle_budget.py): no pickle can build, hash or print a structure past a fixed size, however
  it shares parts through the memo, and no message prints the file's objects (reprlib bounds
  what it shows);
- a zip's member count and directory size are read from its end record before the zip is
  opened: at most MAX_ZIP_MEMBERS and MAX_ZIP_DIRECTORY_BYTES;
- the file is read once, whole, under a byte cap (`max_bytes`), and nothing is allocated that
  the cap does not bound: storages must fit in the bytes that hold them, and the tensors copied
  out of them add up to at most the cap;
- every view is checked before it is made: offsets, sizes and strides non-negative and the last
  element inside its storage, one dtype per storage (the one its class names).
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import reprlib
import struct
import zipfile
import zlib
from typing import Any, BinaryIO, Callable

import numpy as np

from vaegan_jax import files
from vaegan_jax.metrics import pickle_budget

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
BYTE_ORDERS = {'little': '<', 'big': '>'}
DEFAULT_MAX_BYTES = 1 << 30               # read_state_dict's cap when the caller names none
MAX_ZIP_MEMBERS = 65_536                  # pytorch-fid's Inception file has 485
MAX_ZIP_DIRECTORY_BYTES = 4 * 2**20       # and a central directory of about 40 KB
ALLOWED_GLOBALS = frozenset(
    {('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor_v2'),
     ('torch._utils', '_rebuild_parameter')} | {('torch', name) for name in STORAGE_DTYPES})


def _bounded_repr() -> reprlib.Repr:
  """repr of the file's objects for messages, bounded whatever they hold."""
  bounded = reprlib.Repr()
  bounded.maxlevel, bounded.maxtuple, bounded.maxlist, bounded.maxdict = 2, 6, 6, 4
  bounded.maxstring = bounded.maxother = 60
  return bounded


shown = _bounded_repr().repr


class PthError(ValueError):
  """A file that is not a readable PyTorch state dict, or one that asks for more than it may."""


class _StorageType:
  """What the pickle's `torch.FloatStorage` (etc.) stands for: the dtype its bytes hold."""

  def __init__(self, name: str):
    self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


def _is_count(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Unpickler(pickle.Unpickler):
  """An unpickler that knows tensors and storages, and nothing else outside plain containers.

  get_storage(key, storage type, numel) hands out a storage's array; tensor views of it are
  checked against its size, and copying them out may take at most `budget` bytes in all.
  """

  def __init__(self, file: BinaryIO, get_storage: Callable[[str, _StorageType, int], np.ndarray],
               budget: int):
    pickle_budget.check(file, ALLOWED_GLOBALS)
    super().__init__(file)
    self._get_storage, self._budget = get_storage, budget

  def find_class(self, module: str, name: str) -> Any:
    allowed = {('collections', 'OrderedDict'): collections.OrderedDict,
               ('torch._utils', '_rebuild_tensor_v2'): self._rebuild_tensor,
               ('torch._utils', '_rebuild_parameter'): _rebuild_parameter}
    if (module, name) in allowed:
      return allowed[(module, name)]
    if module == 'torch' and name in STORAGE_DTYPES:
      return _StorageType(name)
    raise PthError(f'The file asks to unpickle {module}.{name}, which a state dict does not '
                   f'hold; it was not read.')

  def persistent_load(self, persistent_id: Any) -> np.ndarray:
    if not (isinstance(persistent_id, tuple) and len(persistent_id) >= 5
            and persistent_id[0] == 'storage' and isinstance(persistent_id[1], _StorageType)
            and isinstance(persistent_id[2], (str, int)) and _is_count(persistent_id[4])):
      raise PthError(f'Unknown persistent id {shown(persistent_id)}.')
    if len(persistent_id) > 5 and persistent_id[5] is not None:
      raise PthError('The file holds a view of a storage (an old torch format); not supported.')
    _, storage_type, key, _location, numel = persistent_id[:5]
    return self._get_storage(str(key), storage_type, numel)

  def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
                      *unused: Any) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 on a numpy storage: a checked strided view of it."""
    if not isinstance(storage, np.ndarray):
      raise PthError('A tensor names something other than a storage.')
    size, stride = tuple(size), tuple(stride)
    if not (_is_count(offset) and len(size) == len(stride)
            and all(map(_is_count, size + stride))):
      raise PthError(f'A tensor has offset {shown(offset)}, size {shown(size)} and stride '
                     f'{shown(stride)}: they must be non-negative integers, one stride per '
                     f'dimension.')
    elements = math.prod(size)
    if elements == 0:
      return np.zeros(size, storage.dtype)
    last = offset + sum((length - 1) * step for length, step in zip(size, stride))
    if last >= storage.size:
      raise PthError(f'A tensor of size {size}, stride {stride} and offset {offset} reaches '
                     f'element {last} of a storage of {storage.size}: outside its data.')
    self._budget -= elements * storage.dtype.itemsize
    if self._budget < 0:
      raise PthError('The tensors add up to more bytes than the limit it is read under.')
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.dtype.itemsize
                                                         for s in stride), writeable=False)


def _rebuild_parameter(data: Any, *unused: Any) -> np.ndarray:
  if not isinstance(data, np.ndarray):
    raise PthError('A parameter holds something other than a tensor.')
  return data


class _Storages:
  """The storages of one file by key: each key names one storage class and size, and all of
  them add up to at most `budget` bytes."""

  def __init__(self, budget: int):
    self.arrays: dict[str, np.ndarray] = {}
    self._kinds: dict[str, tuple[str, int]] = {}
    self._budget = budget

  def get(self, key: str, storage_type: _StorageType, numel: int,
          make: Callable[[np.dtype], np.ndarray]) -> np.ndarray:
    kind = (storage_type.name, numel)
    if key in self.arrays:
      if self._kinds[key] != kind:
        raise PthError(f'Storage {key} is named as {storage_type.name} of {numel} elements and '
                       f'as {self._kinds[key][0]} of {self._kinds[key][1]}.')
      return self.arrays[key]
    self._budget -= numel * storage_type.dtype.itemsize
    if self._budget < 0:
      raise PthError(f'Storage {key} ({numel} elements) does not fit in the file.')
    self.arrays[key], self._kinds[key] = make(storage_type.dtype), kind
    return self.arrays[key]


def zip_directory(data: bytes) -> tuple[int, int]:
  """(members, bytes) of a zip's central directory as its end record states them (zip64's
  where it defers to it), read before zipfile builds a record per member; PthError where there
  is no end record. zipfile reads the directory by its size, whatever the count says, so both
  are bounded."""
  end = data.rfind(b'PK\x05\x06', max(0, len(data) - 22 - 65_535))
  if end < 0 or len(data) < end + 22:
    raise PthError('Its zip end record is missing; it is damaged.')
  count, size = struct.unpack_from('<HI', data, end + 10)
  locator = end - 20
  if (0xFFFF in (count,) or size == 0xFFFFFFFF) and locator >= 0 and (
      data[locator:locator + 4] == b'PK\x06\x07'):
    (record,) = struct.unpack_from('<Q', data, locator + 8)
    if data[record:record + 4] != b'PK\x06\x06' or len(data) < record + 56:
      raise PthError('Its zip64 end record is missing; it is damaged.')
    count, size = struct.unpack_from('<QQ', data, record + 32)
  return count, size


def _read_zip(data: bytes, max_bytes: int) -> Any:
  count, size = zip_directory(data)
  if count > MAX_ZIP_MEMBERS or size > MAX_ZIP_DIRECTORY_BYTES:
    raise PthError(f'It is a zip of {count:,} members in a directory of {size:,} bytes, past the '
                   f'{MAX_ZIP_MEMBERS:,} and {MAX_ZIP_DIRECTORY_BYTES:,} a state dict could need; '
                   f'it was not opened.')
  archive = zipfile.ZipFile(io.BytesIO(data))
  members = {info.filename: info for info in archive.infolist()}
  pickles = sorted((name for name in members if name.endswith('data.pkl')), key=len)
  if not pickles:
    raise PthError('It is a zip without data.pkl; it is not a PyTorch file.')
  if sum(info.file_size for info in members.values()) > max_bytes:
    raise PthError(f'Its members unpack to more than the limit of {max_bytes:,} bytes.')
  root = pickles[0][:-len('data.pkl')]
  order_name = (archive.read(members[f'{root}byteorder']).decode('ascii', 'replace')
                if f'{root}byteorder' in members else 'little')
  if order_name not in BYTE_ORDERS:
    raise PthError(f'Its byteorder record says {order_name[:20]!r}, not little or big.')
  storages = _Storages(max_bytes)

  def read_storage(key: str, storage_type: _StorageType, numel: int) -> np.ndarray:
    def make(dtype: np.dtype) -> np.ndarray:
      member = members.get(f'{root}data/{key}')
      if member is None or member.file_size < numel * dtype.itemsize:
        raise PthError(f'Storage {key} of {numel} elements is missing or shorter in the zip.')
      raw = archive.read(member)[:numel * dtype.itemsize]
      return np.frombuffer(raw, dtype.newbyteorder(BYTE_ORDERS[order_name]), count=numel)
    return storages.get(key, storage_type, numel, make)

  return _Unpickler(io.BytesIO(archive.read(members[pickles[0]])), read_storage,
                    max_bytes).load()


def _read_legacy(data: bytes, max_bytes: int) -> Any:
  stream = io.BytesIO(data)

  def no_storages(*unused: Any) -> np.ndarray:
    raise PthError('A header pickle names a storage.')

  header = lambda: _Unpickler(stream, no_storages, 0).load()
  if header() != LEGACY_MAGIC:
    raise PthError('It is neither a zip nor a legacy PyTorch file.')
  header()                                 # the protocol version
  system_info = header()
  little = system_info.get('little_endian', True) if isinstance(system_info, dict) else True
  order = '<' if little else '>'
  # The storages' bytes follow the object: hand out arrays now, filled in below. They must fit
  # in the bytes left after the object, which bounds what they allocate.
  storages = _Storages(len(data) - stream.tell())
  result = _Unpickler(stream, lambda key, storage_type, numel: storages.get(
      key, storage_type, numel, lambda dtype: np.empty(numel, dtype)), max_bytes).load()
  keys = header()
  if not isinstance(keys, list) or set(map(str, keys)) != set(storages.arrays):
    raise PthError('Its list of storage keys does not match the storages the tensors name.')
  for key in map(str, keys):
    array = storages.arrays[key]
    (count,) = struct.unpack(f'{order}q', stream.read(8))
    if count != array.size:
      raise PthError(f'Storage {key} holds {count} elements where its tensors say {array.size}.')
    raw = stream.read(count * array.dtype.itemsize)
    if len(raw) != count * array.dtype.itemsize:
      raise PthError(f'Storage {key} is cut short.')
    array[:] = np.frombuffer(raw, array.dtype.newbyteorder(order))
  return result


def _materialise(tree: Any) -> Any:
  """Native-order copies of the tensors' views, now that every storage holds its data."""
  if isinstance(tree, dict):
    return collections.OrderedDict((key, _materialise(value)) for key, value in tree.items())
  if isinstance(tree, np.ndarray):
    return np.array(tree, dtype=tree.dtype.newbyteorder('='))
  return tree


def read_state_dict(source: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES
                    ) -> dict[str, np.ndarray]:
  """The tensors of a .pth state dict by name, as numpy arrays; PthError for anything else.

  source: a path, or the file's bytes (as read once by a caller that checked their digest).
  max_bytes: the most the file may hold, and the most its tensors may take once copied out.
  """
  name = source if isinstance(source, str) else 'The state dict'
  try:
    data = source if isinstance(source, bytes) else files.read_regular_file(source, max_bytes)
    if len(data) > max_bytes:
      raise PthError(f'It has {len(data):,} bytes, over the limit of {max_bytes:,}.')
    reader = _read_zip if zipfile.is_zipfile(io.BytesIO(data)) else _read_legacy
    state = _materialise(reader(data, max_bytes))
  except PthError as error:
    raise PthError(f'{name}: {error}') from None
  except pickle_budget.PickleTooCostly as error:
    raise PthError(f'{name} was not unpickled: {error}.') from None
  except files.UnsafeFile as error:
    raise PthError(str(error)) from None
  except (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, ValueError,
          AttributeError, RecursionError, OverflowError, struct.error, zipfile.BadZipFile,
          zlib.error, NotImplementedError, UnicodeDecodeError) as error:
    raise PthError(f'{name} is not a readable PyTorch state dict ({type(error).__name__}: '
                   f'{str(error)[:200]}); it is damaged or incomplete.') from None
  except OSError as error:
    raise PthError(f'Cannot read {name}: {error.strerror or error}.') from None
  if not isinstance(state, dict):
    raise PthError(f'{name} holds a {type(state).__name__}, not a state dict.')
  return dict(state)
