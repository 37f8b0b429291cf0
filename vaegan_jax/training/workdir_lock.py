"""One trainer per workdir: an exclusive lock on WORKDIR/.lock (folders.FileLock), released when
the process ends, even by SIGKILL, so a stale lock never blocks a resume. The file names the
holder (pid, host, start time) for the message a second trainer gets; a link, FIFO or folder
planted at WORKDIR/.lock is refused, never written through. The holder removes the file when it
exits, while it still holds the lock.
"""
from __future__ import annotations

from vaegan_jax import folders

LOCK_NAME = '.lock'


class WorkdirBusy(RuntimeError):
  """Another process trains in this workdir."""


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds the workdir's lock (workdir: a folders.Folder); raises
  WorkdirBusy if another process holds it, and files.UnsafeFile if .lock is not a plain file."""

  def __init__(self, workdir: folders.Folder):
    self.workdir = workdir
    self._lock = folders.FileLock(workdir, LOCK_NAME, wait=False,
                                  what=f'the workdir {workdir.path()}', remove=True)

  def __enter__(self) -> WorkdirLock:
    try:
      self._lock.__enter__()
    except folders.LockBusy as busy:
      raise WorkdirBusy(
          f'{self.workdir.path()} is in use by {busy}. One run trains in a workdir at a time: '
          f'wait for it to finish or stop it, or give another --workdir.') from None
    return self

  def __exit__(self, *exc_info) -> None:
    self._lock.__exit__(*exc_info)
