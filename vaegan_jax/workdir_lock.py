"""One trainer per workdir: an exclusive lock on WORKDIR/.lock, released when the process ends.

The operating system holds the lock (fcntl.flock), so a process that dies, even by SIGKILL,
releases it: a stale lock never blocks a resume. The file names the holder (pid, host, start
time) for the message a second trainer gets.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time

LOCK_NAME = '.lock'


class WorkdirBusy(RuntimeError):
  """Another process trains in this workdir."""


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds the workdir's lock; raises WorkdirBusy if another
  process holds it."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self._file = None

  def __enter__(self) -> WorkdirLock:
    file = open(self.path, 'a+')
    try:
      fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      file.seek(0)
      holder = _describe(file.read())
      file.close()
      raise WorkdirBusy(
          f'{os.path.dirname(self.path)} is in use by {holder}. One run trains in a workdir at '
          f'a time: wait for it to finish or stop it, or give another --workdir.') from None
    file.seek(0)
    file.truncate()
    file.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                           'since': time.strftime('%Y-%m-%d %H:%M:%S')}))
    file.flush()
    self._file = file
    return self

  def __exit__(self, *exc_info) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def _describe(content: str) -> str:
  try:
    holder = json.loads(content)
    return f'process {holder["pid"]} on {holder["host"]} (since {holder["since"]})'
  except (ValueError, KeyError, TypeError):
    return 'another process'
