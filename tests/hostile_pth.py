"""PyTorch .pth files written without torch, for the reader's tests: any tensor geometry (valid
or not), either layout, either byte order, and pickles that try to run code.

A tensor is given as (storage key, storage class, offset, size, stride); storages as
{key: (storage class, numpy array of its elements)}. The pickles name the same globals that
torch.save writes (torch._utils._rebuild_tensor_v2, torch.FloatStorage, ...), through stand-in
modules placed in sys.modules only while pickling.
"""
import collections
import contextlib
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class Storage:
  """A storage reference: pickled as the persistent id torch writes."""

  def __init__(self, key, class_name, numel):
    self.key, self.class_name, self.numel = key, class_name, numel


@contextlib.contextmanager
def torch_names():
  """Stand-ins for the modules whose names the pickles carry."""
  torch, utils = types.ModuleType('torch'), types.ModuleType('torch._utils')

  def _rebuild_tensor_v2(*args):
    raise AssertionError('never called while writing')
  _rebuild_tensor_v2.__module__ = 'torch._utils'
  _rebuild_tensor_v2.__qualname__ = '_rebuild_tensor_v2'
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  for name in ('FloatStorage', 'LongStorage', 'HalfStorage', 'DoubleStorage'):
    setattr(torch, name, type(name, (), {'__module__': 'torch'}))
  saved = {name: sys.modules.get(name) for name in ('torch', 'torch._utils')}
  sys.modules.update({'torch': torch, 'torch._utils': utils})
  try:
    yield torch, utils
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module


class Tensor:
  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

  def __reduce__(self):
    return (sys.modules['torch._utils']._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
  def __init__(self, file, legacy):
    super().__init__(file, protocol=2)
    self.legacy = legacy

  def persistent_id(self, obj):
    if isinstance(obj, Storage):
      storage_class = getattr(sys.modules['torch'], obj.class_name)
      return ('storage', storage_class, obj.key, 'cpu', obj.numel) + (
          (None,) if self.legacy else ())
    return None


def state_pickle(tensors, storages, legacy=False):
  """The pickled state dict {name: tensor}."""
  with torch_names():
    state = collections.OrderedDict(
        (name, Tensor(Storage(key, storages[key][0], len(storages[key][1])), offset, size,
                      stride))
        for name, (key, _class, offset, size, stride) in tensors.items())
    buffer = io.BytesIO()
    _Pickler(buffer, legacy).dump(state)
  return buffer.getvalue()


def write_zip(path, tensors, storages, byteorder='little', data_pkl=None):
  order = '<' if byteorder == 'little' else '>'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', data_pkl or state_pickle(tensors, storages))
    archive.writestr('archive/byteorder', byteorder)
    for key, (_, values) in storages.items():
      archive.writestr(f'archive/data/{key}', values.astype(values.dtype.newbyteorder(order))
                       .tobytes())


def write_legacy(path, tensors, storages, little_endian=True, counts=None):
  """counts: {key: the element count written before the storage's bytes} to lie about."""
  order = '<' if little_endian else '>'
  with open(path, 'wb') as file:
    for header in (LEGACY_MAGIC, 1001, {'protocol_version': 1001, 'little_endian': little_endian,
                                        'type_sizes': {'short': 2, 'int': 4, 'long': 4}}):
      pickle.dump(header, file, protocol=2)
    file.write(state_pickle(tensors, storages, legacy=True))
    pickle.dump(list(storages), file, protocol=2)
    for key, (_, values) in storages.items():
      count = (counts or {}).get(key, len(values))
      file.write(struct.pack(f'{order}q', count))
      file.write(values.astype(values.dtype.newbyteorder(order)).tobytes())


class RunsCommand:
  """A pickled object whose unpickling runs `touch MARKER`."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def float_storage(count):
  return ('FloatStorage', np.arange(count, dtype=np.float32))
