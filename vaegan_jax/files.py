"""Files a user points us at, read and written as if they were hostile.

- `read_regular_file` reads a whole file only if it is a regular file no larger than a cap: a
  link to /dev/zero, a FIFO or a huge file is refused with a message instead of filling memory
  or hanging.
- `FileLock` holds an exclusive flock on a lock file opened without following links, so a link
  planted in a shared folder cannot make us overwrite its target. The operating system releases
  the lock when the holder dies, even by SIGKILL, so a stale lock never blocks anyone.
- `check_writable_folder` probes a folder with a fresh file from mkstemp (O_EXCL: never a link).
- `write_atomically` writes a file whole or not at all, through a fresh file beside it.

This module imports nothing else of the package, so any module may use it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
from typing import BinaryIO, Callable, Iterator

from absl import logging


class UnsafeFile(ValueError):
  """A file that is not a regular file, or larger than the cap it is read under."""


class LockBusy(RuntimeError):
  """Another process holds the lock (raised only where the lock is not waited for)."""


class FolderError(OSError):
  """A folder that cannot be made or written; the message says which and what to do."""


class WriteFailed(OSError):
  """Writing into the workdir failed mid-run; the message names the cause and the fix."""


def write_failure_advice(error: BaseException) -> str:
  """What to do about a failed write, by its cause: a read-only file system, a permission, a
  full disk, or anything else."""
  code = getattr(error, 'errno', None)
  if code is None and isinstance(error.__cause__ or error.__context__, OSError):
    code = (error.__cause__ or error.__context__).errno
  if code == errno.EROFS or 'Read-only file system' in str(error):
    return 'its file system is read-only: remount it writable (or copy the run elsewhere)'
  if code in (errno.EACCES, errno.EPERM) or 'Permission denied' in str(error):
    return 'this user may not write there: fix its permissions'
  if code in (errno.ENOSPC, errno.EDQUOT) or 'No space left' in str(error):
    return 'the disk is full: free disk space'
  return 'check the disk'


# ---------------------------------------------------------------- reading
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


# ---------------------------------------------------------------- writing
def check_writable_folder(folder: str, what: str, flag: str) -> None:
  """Make `folder` if needed and write a probe file in it; FolderError naming `what` (e.g. 'the
  workdir') and `flag` (the setting to change) if either fails."""
  if not folder:
    raise FolderError(f'{what} is empty; give a folder with {flag}.')
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise FolderError(f'{what} {folder} is a file, not a folder; give {flag} a folder.')
  try:
    os.makedirs(folder, exist_ok=True)
    descriptor, probe = tempfile.mkstemp(prefix='.write_test_', dir=folder)
    os.close(descriptor)
    os.remove(probe)
  except OSError as error:
    raise FolderError(f'Cannot write to {what} {folder} ({error.strerror or error}). Give '
                      f'{flag} a folder this user can write.') from None


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
  """`path` written whole or not at all: write(file) fills a fresh file beside it (mkstemp:
  O_EXCL, never a link), which is flushed to disk and renamed over `path`. A reader sees the old
  file or the new one, never part of one; a link at `path` is replaced, not written through;
  where writing fails, the fresh file is removed and `path` is as it was."""
  folder = os.path.dirname(path) or '.'
  descriptor, temporary = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                                           suffix='.incomplete', dir=folder)
  try:
    with os.fdopen(descriptor, 'wb') as file:
      write(file)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temporary, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temporary)
    raise


def open_no_follow(path: str, flags: int, mode: int = 0o644) -> int:
  """os.open that refuses a symbolic link at `path` with UnsafeFile (O_NOFOLLOW)."""
  try:
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), mode)
  except OSError as error:
    if error.errno == errno.ELOOP:
      raise UnsafeFile(f'{path} is a symbolic link; it is not followed, since writing through '
                       f'it would change a file elsewhere. Remove the link.') from None
    raise


# ---------------------------------------------------------------- locks
class FileLock:
  """`with FileLock(path):` holds an exclusive lock on `path` (made if absent; never a link).

  wait=False raises LockBusy naming the holder when another process holds it; wait=True blocks
  until it is free. Where the file system takes no locks (some FUSE and network mounts), the
  lock is skipped with one log line, and `held` is False: callers then keep to what is safe
  without it.
  """

  def __init__(self, path: str, wait: bool, what: str = ''):
    self.path, self.wait, self.what = path, wait, what or path
    self.held = False
    self._descriptor: int | None = None

  def __enter__(self) -> FileLock:
    descriptor = open_no_follow(self.path, os.O_RDWR | os.O_CREAT)
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      if error.errno not in (errno.EAGAIN, errno.EACCES):
        os.close(descriptor)
        logging.warning('Cannot lock %s (%s): %s is not protected against a second process.',
                        self.path, error.strerror, self.what)
        return self
      holder = describe_holder(os.pread(descriptor, 4096, 0))
      if not self.wait:
        os.close(descriptor)
        raise LockBusy(holder) from None
      logging.info('Waiting for %s, which %s holds.', self.what, holder)
      fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                      'since': time.strftime('%Y-%m-%d %H:%M:%S')}).encode(), 0)
    self._descriptor, self.held = descriptor, True
    return self

  def __exit__(self, *exc_info) -> None:
    if self._descriptor is not None:
      fcntl.flock(self._descriptor, fcntl.LOCK_UN)
      os.close(self._descriptor)
      self._descriptor, self.held = None, False


def describe_holder(content: bytes) -> str:
  """'process PID on HOST (since TIME)' from a lock file's content."""
  try:
    holder = json.loads(content)
    return f'process {holder["pid"]} on {holder["host"]} (since {holder["since"]})'
  except (ValueError, KeyError, TypeError):
    return 'another process'


@contextlib.contextmanager
def exclusive(folder: str, name: str, what: str) -> Iterator[FileLock]:
  """Hold FOLDER/.NAME.lock, waiting for another holder; `what` names it in the log."""
  os.makedirs(folder, exist_ok=True)
  with FileLock(os.path.join(folder, f'.{name}.lock'), wait=True, what=what) as lock:
    yield lock


def make_once(folder: str, name: str, done: Callable[[], bool], make: Callable[[], None],
              what: str) -> None:
  """make() unless done(), one process at a time (FOLDER/.NAME.lock): a second process waits
  for the first, then finds it done. No lock is taken when it is done already, so a read-only
  shared folder that holds the result is read as it is."""
  if done():
    return
  with exclusive(folder, name, what):
    if not done():
      make()
