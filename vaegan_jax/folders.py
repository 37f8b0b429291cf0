"""Every write under a workdir, a data_dir or an --out folder, through one place that cannot
follow a link (SECURITY.md, "What is written").

A `Folder` is such a folder. The folder itself may be a link (users link runs/ to a scratch
disk); below it, nothing is followed: each entry is made, opened, renamed and removed relative to
an open descriptor of its parent, and each folder on the way is opened with O_NOFOLLOW. A link
planted anywhere below (a symbolic link, a hard link to a file that is written in place, a FIFO,
a folder where a file belongs) refuses the write with one line, files.UnsafeFile, that names it;
nothing outside the folder changes.

- `write_atomically` writes a file whole or not at all (a fresh file beside it, renamed over it).
- `open_append` opens a file that is written in place (metrics.jsonl, TensorBoard's events).
- `move`, `remove_tree` and `check_plain` let libraries that take paths (orbax, tfds) write into a
  tree that was checked first: no entry of it a link.
- `FileLock` holds an exclusive flock on a lock file opened the same way.

This module imports only files.py of the package, so any module may use it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import stat
import time
from typing import BinaryIO, Callable, Iterator

from absl import logging

from vaegan_jax.files import UnsafeFile

CLOEXEC = getattr(os, 'O_CLOEXEC', 0)


class FolderError(OSError):
  """A folder that cannot be made or written; the message says which and what to do."""


class WriteFailed(OSError):
  """Writing into the workdir failed mid-run; the message names the cause and the fix."""


class LockBusy(RuntimeError):
  """Another process holds the lock (raised only where the lock is not waited for)."""


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


def describe_entry(status: os.stat_result) -> str:
  """'a symbolic link', 'a FIFO', ... for an entry that is not what a write expects."""
  mode = status.st_mode
  if stat.S_ISLNK(mode):
    return 'a symbolic link'
  if stat.S_ISDIR(mode):
    return 'a folder'
  if stat.S_ISREG(mode):
    return f'a file with {status.st_nlink} hard links' if status.st_nlink > 1 else 'a file'
  return 'a FIFO, socket or device'


def refusal(path: str, found: str) -> UnsafeFile:
  return UnsafeFile(f'{path} is {found}, which vaegan_jax does not write through (it would '
                    f'change something elsewhere). Remove it and rerun.')


def plain_file_problem(status: os.stat_result) -> str | None:
  """Why a file written in place is unsafe (not regular, or one of several hard links), or None.
  """
  if stat.S_ISREG(status.st_mode) and status.st_nlink == 1:
    return None
  return describe_entry(status)


class Folder:
  """A folder this project writes in, and every entry below it, none of them followed if a link.

  `relative` paths use '/' and may not hold '', '.' or '..' components: nothing is written
  outside `root`. `what` and `flag` name the folder and its setting in messages.
  """

  def __init__(self, root: str, what: str = 'the folder', flag: str = '',
               prefix: tuple[str, ...] = ()):
    self.given = root
    self.root = os.path.abspath(os.path.expanduser(root))
    self.what, self.flag, self.prefix = what, flag, prefix

  def __repr__(self) -> str:
    return f'Folder({self.path()!r})'

  def path(self, relative: str = '') -> str:
    """The entry's path, for messages and for libraries that take paths."""
    return os.path.join(self.root, *self._parts(relative))

  def sub(self, relative: str) -> Folder:
    """The folder `relative`, made if needed (none of it a link), as a Folder of its own whose
    entries are reached from the same root, none of them through a link."""
    self.make_folder(relative)
    return Folder(self.root, self.what, self.flag, tuple(self._parts(relative)))

  # ------------------------------------------------------------ the folder itself
  def make(self) -> Folder:
    """Make the folder if needed (following links in its own path) and write a fresh probe file
    in it (O_EXCL: never a link); FolderError naming `what` and `flag` if either fails."""
    if not self.given:
      raise FolderError(f'{self.what} is empty; give a folder with {self.flag}.')
    if os.path.exists(self.root) and not os.path.isdir(self.root):
      raise FolderError(f'{self.what} {self.root} is a file, not a folder; give {self.flag} a '
                        f'folder.')
    try:
      os.makedirs(self.root, exist_ok=True)
      descriptor = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
      try:
        probe = f'.write_test_{secrets.token_hex(8)}'
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC,
                         0o600, dir_fd=descriptor))
        os.unlink(probe, dir_fd=descriptor)
      finally:
        os.close(descriptor)
    except OSError as error:
      raise FolderError(f'Cannot write to {self.what} {self.root} ({error.strerror or error}). '
                        f'Give {self.flag} a folder this user can write.') from None
    return self

  # ------------------------------------------------------------ walking without following
  def _parts(self, relative: str) -> list[str]:
    """The components below the root of `relative` ('' is this folder itself)."""
    if not relative:
      return list(self.prefix)
    parts = relative.split('/')
    if any(part in ('', '.', '..') for part in parts):
      raise UnsafeFile(f'{relative!r} is not a plain path below {self.path()}; nothing is '
                       f'written outside it.')
    return list(self.prefix) + parts

  def _open_folder(self, parent: int, name: str, create: bool, shown: str) -> int:
    """A descriptor of folder `name` in `parent`, made first where `create`; UnsafeFile if it is
    a link or anything but a folder."""
    for _ in range(2):
      try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC,
                       dir_fd=parent)
      except FileNotFoundError:
        if not create:
          raise
        with contextlib.suppress(FileExistsError):
          os.mkdir(name, 0o755, dir_fd=parent)
      except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
          raise
        raise refusal(shown, describe_entry(os.stat(name, dir_fd=parent,
                                                    follow_symlinks=False))) from None
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC, dir_fd=parent)

  @contextlib.contextmanager
  def _parent(self, relative: str, create: bool) -> Iterator[tuple[int, str]]:
    """(descriptor of the folder that holds `relative`, its last component): the root opened as
    given, each folder below it without following a link (made where `create`)."""
    parts = self._parts(relative)
    if not parts:
      raise UnsafeFile(f'{self.root} is the folder itself, not an entry of it.')
    descriptor = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
    try:
      for depth, part in enumerate(parts[:-1]):
        inner = self._open_folder(descriptor, part, create,
                                  os.path.join(self.root, *parts[:depth + 1]))
        os.close(descriptor)
        descriptor = inner
      yield descriptor, parts[-1]
    finally:
      os.close(descriptor)

  @contextlib.contextmanager
  def _opened(self, relative: str, create: bool = False) -> Iterator[int]:
    """A descriptor of the folder `relative` ('' this folder), reached without following a
    link."""
    if not self._parts(relative):
      descriptor = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
    else:
      with self._parent(relative, create) as (parent, name):
        descriptor = self._open_folder(parent, name, create, self.path(relative))
    try:
      yield descriptor
    finally:
      os.close(descriptor)

  def _lstat(self, descriptor: int, name: str) -> os.stat_result | None:
    try:
      return os.stat(name, dir_fd=descriptor, follow_symlinks=False)
    except FileNotFoundError:
      return None

  # ------------------------------------------------------------ folders
  def make_folder(self, relative: str = '') -> str:
    """Make the folder `relative` and the ones above it, none of them a link; its path."""
    with self._opened(relative, create=True):
      return self.path(relative)

  def exists(self, relative: str) -> bool:
    """Whether `relative` exists (as anything, a link included), without following links."""
    try:
      with self._parent(relative, create=False) as (descriptor, name):
        return self._lstat(descriptor, name) is not None
    except FileNotFoundError:
      return False

  def list(self, relative: str = '') -> list[str]:
    """The names in the folder `relative` ('' this folder), which must not be a link."""
    with self._opened(relative) as descriptor:
      return sorted(os.listdir(descriptor))

  def check_plain(self, relative: str = '') -> None:
    """UnsafeFile unless every entry of the tree at `relative` (if it exists) is a folder or a
    file with one link: a library that takes a path (orbax, tfds) may then write in it."""
    try:
      if self._parts(relative):
        with self._parent(relative, create=False) as (descriptor, name):
          status = self._lstat(descriptor, name)
          if status is None:
            return
          if not stat.S_ISDIR(status.st_mode):
            problem = plain_file_problem(status)
            if problem:
              raise refusal(self.path(relative), problem)
            return
      with self._opened(relative) as descriptor:
        self._check_tree(os.dup(descriptor), self.path(relative))
    except FileNotFoundError:
      return

  def _check_tree(self, descriptor: int, shown: str) -> None:
    """Closes `descriptor` (a folder) once every entry below it is checked."""
    try:
      with os.scandir(descriptor) as entries:
        for entry in entries:
          status = entry.stat(follow_symlinks=False)
          inner = os.path.join(shown, entry.name)
          if stat.S_ISDIR(status.st_mode):
            self._check_tree(self._open_folder(descriptor, entry.name, False, inner), inner)
          elif plain_file_problem(status):
            raise refusal(inner, plain_file_problem(status))
    finally:
      os.close(descriptor)

  def remove_tree(self, relative: str) -> None:
    """Remove `relative`, whatever it is; a link is removed itself, never what it points at."""
    try:
      with self._parent(relative, create=False) as (descriptor, name):
        status = self._lstat(descriptor, name)
        if status is None:
          return
        if stat.S_ISDIR(status.st_mode):
          shutil.rmtree(name, dir_fd=descriptor)     # descriptor-based: follows no link inside
        else:
          os.unlink(name, dir_fd=descriptor)
    except FileNotFoundError:
      return

  def move(self, source: str, destination: str) -> None:
    """Rename `source` to `destination` (both below the root), replacing what is there (a file
    or link at once, a folder removed first)."""
    try:
      with self._parent(destination, create=False) as (descriptor, name):
        status = self._lstat(descriptor, name)
      if status is not None and stat.S_ISDIR(status.st_mode):
        self.remove_tree(destination)
    except FileNotFoundError:
      pass
    with (self._parent(source, create=False) as (from_folder, from_name),
          self._parent(destination, create=True) as (to_folder, to_name)):
      os.rename(from_name, to_name, src_dir_fd=from_folder, dst_dir_fd=to_folder)

  # ------------------------------------------------------------ files
  def read_bytes(self, relative: str, max_bytes: int) -> bytes | None:
    """The bytes of file `relative` (None if absent), if it is a regular file of at most
    `max_bytes`; UnsafeFile otherwise."""
    try:
      with self._parent(relative, create=False) as (descriptor, name):
        try:
          handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC,
                           dir_fd=descriptor)
        except FileNotFoundError:
          return None
        except OSError as error:
          if error.errno != errno.ELOOP:
            raise
          raise refusal(self.path(relative), 'a symbolic link') from None
    except FileNotFoundError:
      return None
    with os.fdopen(handle, 'rb') as file:
      status = os.fstat(handle)
      if not stat.S_ISREG(status.st_mode):
        raise refusal(self.path(relative), describe_entry(status))
      if status.st_size > max_bytes:
        raise UnsafeFile(f'{self.path(relative)} has {status.st_size:,} bytes, over the limit '
                         f'of {max_bytes:,}; not read.')
      data = file.read(status.st_size + 1)
    if len(data) > status.st_size:
      raise UnsafeFile(f'{self.path(relative)} grew while it was read; not used.')
    return data

  def open_in_place(self, relative: str, flags: int) -> int:
    """A descriptor of file `relative` opened with `flags` | O_CREAT for writing in place, once
    it is known to be a regular file with one link (a FIFO neither blocks nor is written)."""
    with self._parent(relative, create=True) as (descriptor, name):
      try:
        handle = os.open(name, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC,
                         0o644, dir_fd=descriptor)
      except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
          raise
        raise refusal(self.path(relative), describe_entry(os.stat(
            name, dir_fd=descriptor, follow_symlinks=False))) from None
    problem = plain_file_problem(os.fstat(handle))
    if problem:
      os.close(handle)
      raise refusal(self.path(relative), problem)
    os.set_blocking(handle, True)
    return handle

  def open_append(self, relative: str) -> BinaryIO:
    """File `relative` opened to append to (made if absent), never through a link."""
    return os.fdopen(self.open_in_place(relative, os.O_WRONLY | os.O_APPEND), 'ab')

  def open_new(self, relative: str) -> BinaryIO:
    """File `relative` opened empty for writing (made if absent, emptied if a plain file)."""
    handle = self.open_in_place(relative, os.O_WRONLY)
    os.ftruncate(handle, 0)
    return os.fdopen(handle, 'wb')

  def write_atomically(self, relative: str, write: Callable[[BinaryIO], None]) -> str:
    """`relative` written whole or not at all; its path. write(file) fills a fresh file beside
    it (O_EXCL: never a link), which is flushed to disk and renamed over the entry: a reader
    sees the old file or the new one, never part of one, and a link there is replaced, not
    written through. Where writing fails, the fresh file is removed and the entry is as it was.
    """
    with self._parent(relative, create=True) as (descriptor, name):
      temporary = f'.{name}.{secrets.token_hex(6)}.incomplete'
      handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC,
                       0o644, dir_fd=descriptor)
      try:
        with os.fdopen(handle, 'wb') as file:
          write(file)
          file.flush()
          os.fsync(file.fileno())
        os.replace(temporary, name, src_dir_fd=descriptor, dst_dir_fd=descriptor)
      except BaseException:
        with contextlib.suppress(OSError):
          os.unlink(temporary, dir_fd=descriptor)
        raise
    return self.path(relative)


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> str:
  """`path` written whole or not at all (Folder.write_atomically in its parent folder)."""
  folder, name = os.path.split(os.path.abspath(os.path.expanduser(path)))
  return Folder(folder).write_atomically(name, write)


# ---------------------------------------------------------------- locks
class FileLock:
  """`with FileLock(folder, name):` holds an exclusive lock on the file `name` in `folder` (made
  if absent; refused if it is a link, a FIFO, a folder or one of several hard links).

  wait=False raises LockBusy naming the holder when another process holds it; wait=True blocks
  until it is free. Where the file system takes no locks (some FUSE and network mounts), the
  lock is skipped with one log line, and `held` is False: callers then keep to what is safe
  without it. remove=True deletes the file on exit, while still holding it; a process that
  locked the file just before it was deleted sees that the name no longer leads to its file,
  and starts over, so two holders can never both believe they hold it.
  """

  def __init__(self, folder: Folder, name: str, wait: bool, what: str = '',
               remove: bool = False):
    self.folder, self.name, self.wait, self.remove = folder, name, wait, remove
    self.path = folder.path(name)
    self.what = what or self.path
    self.held = False
    self._descriptor: int | None = None

  def __enter__(self) -> FileLock:
    while True:
      descriptor = self.folder.open_in_place(self.name, os.O_RDWR)
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
      if self._still_named(descriptor):
        break
      os.close(descriptor)              # its holder removed it as we locked it: start over
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                      'since': time.strftime('%Y-%m-%d %H:%M:%S')}).encode(), 0)
    self._descriptor, self.held = descriptor, True
    return self

  def _still_named(self, descriptor: int) -> bool:
    """Whether the lock's name still leads to the file `descriptor` holds."""
    try:
      with self.folder._parent(self.name, create=False) as (parent, name):
        current = self.folder._lstat(parent, name)
    except FileNotFoundError:
      return False
    held = os.fstat(descriptor)
    return current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)

  def __exit__(self, *exc_info) -> None:
    if self._descriptor is None:
      return
    try:
      if self.remove:
        with contextlib.suppress(OSError):
          with self.folder._parent(self.name, create=False) as (parent, name):
            os.unlink(name, dir_fd=parent)
    finally:
      fcntl.flock(self._descriptor, fcntl.LOCK_UN)
      os.close(self._descriptor)
      self._descriptor, self.held = None, False


def describe_holder(content: bytes) -> str:
  """'process PID on HOST (since TIME)' from a lock file's content."""
  try:
    holder = json.loads(content)
    return f'process {int(holder["pid"])} on {str(holder["host"])[:100]} (since ' \
           f'{str(holder["since"])[:40]})'
  except (ValueError, KeyError, TypeError):
    return 'another process'


@contextlib.contextmanager
def exclusive(folder: Folder, name: str, what: str) -> Iterator[FileLock]:
  """Hold FOLDER/.NAME.lock, waiting for another holder; `what` names it in the log."""
  with FileLock(folder, f'.{name}.lock', wait=True, what=what) as lock:
    yield lock


def make_once(folder: Folder, name: str, done: Callable[[], bool], make: Callable[[], None],
              what: str) -> None:
  """make() unless done(), one process at a time (FOLDER/.NAME.lock): a second process waits
  for the first, then finds it done. No lock is taken when it is done already, so a read-only
  shared folder that holds the result is read as it is."""
  if done():
    return
  with exclusive(folder, name, what):
    if not done():
      make()
