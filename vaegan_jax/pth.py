"""Reading a PyTorch state dict (.pth) into numpy arrays, without torch.

torch.save writes one of two layouts, and both are read here:
- the zip layout (torch >= 1.6): ARCHIVE/data.pkl is a pickle whose tensors name their storages
  by persistent ids ('storage', storage class, key, location, numel); ARCHIVE/data/KEY holds
  each storage's raw little-endian bytes;
- the legacy layout: consecutive pickles (a magic number, the protocol version, system info, the
  object with the same persistent ids, the list of storage keys), then each storage as an int64
  element count followed by its raw bytes, in the order of that list.

A tensor is rebuilt by torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), read
here as a strided view of the storage. Only the classes a state dict needs may be unpickled;
anything else is refused, so a .pth file cannot run code on load.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class PthError(ValueError):
  """A file that is not a readable PyTorch state dict."""


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *unused: Any) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2 on a numpy storage: a strided view of it (a legacy file's
  storages are filled after the object is read; `_materialise` copies the views then)."""
  itemsize = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * itemsize for s in stride))


def _rebuild_parameter(data: np.ndarray, *unused: Any) -> np.ndarray:
  return data


class _StorageType:
  def __init__(self, name: str):
    self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Unpickler(pickle.Unpickler):
  """An unpickler that knows tensors and storages, and nothing else outside plain containers."""
  ALLOWED = {('collections', 'OrderedDict'): collections.OrderedDict,
             ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
             ('torch._utils', '_rebuild_parameter'): _rebuild_parameter}

  def __init__(self, file: BinaryIO, read_storage):
    super().__init__(file)
    self._read_storage = read_storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in self.ALLOWED:
      return self.ALLOWED[(module, name)]
    if module == 'torch' and name in STORAGE_DTYPES:
      return _StorageType(name)
    raise PthError(f'The file asks to unpickle {module}.{name}, which a state dict does not '
                   f'hold; it was not read.')

  def persistent_load(self, persistent_id: Any) -> np.ndarray:
    kind, storage_type, key, _location, numel = persistent_id[:5]
    if kind != 'storage':
      raise PthError(f'Unknown persistent id {persistent_id!r}.')
    return self._read_storage(str(key), storage_type.dtype, int(numel))


def _read_zip(path: str) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [name for name in names if name.endswith('data.pkl')]
    if not pickles:
      raise PthError(f'{path} is a zip without data.pkl; it is not a PyTorch file.')
    root = pickles[0][:-len('data.pkl')]

    def read_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
      return np.frombuffer(archive.read(f'{root}data/{key}'), dtype, count=numel)

    with archive.open(pickles[0]) as file:
      return _materialise(_Unpickler(io.BytesIO(file.read()), read_storage).load())


def _read_legacy(path: str) -> dict[str, np.ndarray]:
  with open(path, 'rb') as file:
    if pickle.load(file) != LEGACY_MAGIC:
      raise PthError(f'{path} is neither a zip nor a legacy PyTorch file.')
    pickle.load(file)                      # the protocol version
    pickle.load(file)                      # system info
    storages: dict[str, tuple[np.dtype, int]] = {}
    lazy: dict[str, np.ndarray] = {}

    def note_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
      # The data follow the object: hand out a placeholder now and fill it in below.
      storages[key] = (dtype, numel)
      return lazy.setdefault(key, np.empty(numel, dtype))

    result = _Unpickler(file, note_storage).load()
    for key in pickle.load(file):
      dtype, numel = storages[str(key)]
      (count,) = struct.unpack('<q', file.read(8))
      data = np.frombuffer(file.read(count * dtype.itemsize), dtype, count=count)
      lazy[str(key)][:] = data[:numel]
  return _materialise(result)


def _materialise(tree: Any) -> Any:
  """Copies of the tensors' views, now that the legacy storages hold their data."""
  if isinstance(tree, dict):
    return collections.OrderedDict((key, _materialise(value)) for key, value in tree.items())
  return np.array(tree) if isinstance(tree, np.ndarray) else tree


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a .pth state dict by name, as numpy arrays."""
  try:
    if zipfile.is_zipfile(path):
      state = _read_zip(path)
    else:
      state = _read_legacy(path)
  except (pickle.UnpicklingError, EOFError, KeyError, struct.error, zipfile.BadZipFile) as error:
    raise PthError(f'{path} is not a readable PyTorch state dict ({type(error).__name__}: '
                   f'{error}); it is damaged or incomplete.') from error
  if not isinstance(state, dict):
    raise PthError(f'{path} holds a {type(state).__name__}, not a state dict.')
  return dict(state)
