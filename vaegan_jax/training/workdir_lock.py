"""One trainer per workdir: an exclusive lock on WORKDIR/.lock (files.FileLock), released when
the process ends, even by SIGKILL, so a stale lock never blocks a resume. The file names the
holder (pid, host, start time) for the message a second trainer gets; a link planted at
WORKDIR/.lock is refused, never written through.
"""
from __future__ import annotations

import os

from vaegan_jax import files

LOCK_NAME = '.lock'


class WorkdirBusy(RuntimeError):
  """Another process trains in this workdir."""


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds the workdir's lock; raises WorkdirBusy if another
  process holds it, and files.UnsafeFile if .lock is a link."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self._lock = files.FileLock(self.path, wait=False, what=f'the workdir {workdir}')

  def __enter__(self) -> WorkdirLock:
    try:
      self._lock.__enter__()
    except files.LockBusy as busy:
      raise WorkdirBusy(
          f'{os.path.dirname(self.path)} is in use by {busy}. One run trains in a workdir at '
          f'a time: wait for it to finish or stop it, or give another --workdir.') from None
    return self

  def __exit__(self, *exc_info) -> None:
    self._lock.__exit__(*exc_info)
