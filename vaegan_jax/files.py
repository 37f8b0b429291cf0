"""Files a user points us at, read as if they were hostile (writing: folders.py).

`read_regular_file` reads a whole file only if it is a regular file no larger than a cap: a link
to /dev/zero, a FIFO or a huge file is refused with a message instead of filling memory or
hanging.

This module imports nothing else of the package, so any module may use it.
"""
from __future__ import annotations

import contextlib
import os
import stat
from typing import BinaryIO, Iterator


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
  `flag` names the setting that raises the cap. At most max_bytes + 1 bytes are ever read, so a
  file that grows while it is read is refused too."""
  raise_it = f' (raise it with {flag})' if flag else ''
  with open_regular(path) as (file, size):
    if size > max_bytes:
      raise UnsafeFile(f'{path} has {size:,} bytes, over the limit of {max_bytes:,}{raise_it}; '
                       f'not read.')
    data = file.read(max_bytes + 1)
  if len(data) > max_bytes:
    raise UnsafeFile(f'{path} grew past the limit of {max_bytes:,} bytes while it was read'
                     f'{raise_it}; not used.')
  return data


def read_head(path: str, count: int) -> bytes:
  """The first `count` bytes of `path`, if it is a regular file; UnsafeFile otherwise."""
  with open_regular(path) as (file, _):
    return file.read(count)
