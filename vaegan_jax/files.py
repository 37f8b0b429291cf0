"""Files a user points us at, read as if they were hostile (writing: folders.py).

`read_regular_file` reads a whole file only if it is a regular file no larger than a cap: a link
to /dev/zero, a FIFO or a huge file is refused with a message instead of filling memory or
hanging. `read_npz` reads an .npz file's arrays from their headers first, so that a small file
of deflated zeros cannot inflate past the cap.

This module imports nothing else of the package, so any module may use it.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import zipfile
import zlib
from typing import BinaryIO, Iterator

import numpy as np


class UnsafeFile(ValueError):
  """A file that is not a regular file, or larger than the cap it is read under."""


@contextlib.contextmanager
def open_regular(path: str) -> Iterator[tuple[BinaryIO, int]]:
  """(file, size) of `path` opened for reading, if it is a regular file (links to one are
  followed); UnsafeFile otherwise. O_NONBLOCK: opening a FIFO must not wait for a writer;
  fstat then refuses it."""
  descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
  with os.fdopen(descriptor, 'rb') as file:
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
      raise UnsafeFile(f'{path} is not a regular file (a device, FIFO or socket); not read.')
    yield file, status.st_size


def read_regular_file(path: str, max_bytes: int, flag: str = '') -> bytes:
  """The bytes of `path`, if it is a regular file of at most `max_bytes`; UnsafeFile otherwise.
  `flag` names the setting that raises the cap. At most one byte past the size the file had
  when it was opened is read (and allocated), so a file that grows while it is read is refused
  too, and a small file under a large cap costs only its size."""
  raise_it = f' (raise it with {flag})' if flag else ''
  with open_regular(path) as (file, size):
    if size > max_bytes:
      raise UnsafeFile(f'{path} has {size:,} bytes, over the limit of {max_bytes:,}{raise_it}; '
                       f'not read.')
    data = file.read(size + 1)
  if len(data) > size:
    raise UnsafeFile(f'{path} grew while it was read{raise_it}; not used.')
  return data


def read_head(path: str, count: int) -> bytes:
  """The first `count` bytes of `path`, if it is a regular file; UnsafeFile otherwise."""
  with open_regular(path) as (file, _):
    return file.read(count)


MAX_NPZ_MEMBERS = 64


def read_npz(path: str, max_bytes: int, flag: str = '') -> dict[str, np.ndarray]:
  """The arrays of an .npz file, read as hostile: a regular file of at most `max_bytes`, a zip of
  at most MAX_NPZ_MEMBERS .npy members whose headers are read first (plain numeric dtypes, no
  pickles), and whose arrays together may take at most `max_bytes` once inflated; each member is
  inflated only up to the size its header declares. UnsafeFile, naming the problem, otherwise.
  """
  data = read_regular_file(path, max_bytes, flag)
  try:
    archive = zipfile.ZipFile(io.BytesIO(data))
    members = archive.infolist()
    if len(members) > MAX_NPZ_MEMBERS:
      raise UnsafeFile(f'{path} holds {len(members)} arrays, more than {MAX_NPZ_MEMBERS}; '
                       f'not read.')
    arrays, budget = {}, max_bytes
    for member in members:
      if not member.filename.endswith('.npy') or '/' in member.filename:
        raise UnsafeFile(f'{path} holds {member.filename[:100]!r}, which is not an array.')
      with archive.open(member) as stream:
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        version = np.lib.format.read_magic(stream)
        if version not in readers:
          raise UnsafeFile(f'{path}: {member.filename[:100]} is .npy version {version}, which '
                           f'np.save writes only for structured arrays; not read.')
        shape, fortran, dtype = readers[version](stream)
        if dtype.hasobject or dtype.kind not in 'biuf' or not all(
            isinstance(side, int) and side >= 0 for side in shape):
          raise UnsafeFile(f'{path}: {member.filename[:100]} is not a numeric array.')
        size = math.prod(shape) * dtype.itemsize
        budget -= size
        if budget < 0:
          raise UnsafeFile(f'{path}: its arrays take more than {max_bytes:,} bytes once '
                           f'inflated (the file has {len(data):,}); not read.')
        raw = stream.read(size + 1)
      if len(raw) != size:
        raise UnsafeFile(f'{path}: {member.filename[:100]} does not hold the {size:,} bytes its '
                         f'header declares.')
      array = np.frombuffer(raw, dtype).reshape(shape, order='F' if fortran else 'C')
      arrays[member.filename[:-len('.npy')]] = array.copy()
    return arrays
  except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error) as error:
    if isinstance(error, UnsafeFile):
      raise
    raise UnsafeFile(f'{path} is not a readable .npz file ({type(error).__name__}: '
                     f'{str(error)[:200]}).') from None
