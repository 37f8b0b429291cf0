"""files.py: reading only bounded regular files, writing through no planted link, and the locks
that let runs started side by side share one data_dir (issue 20, items 3, 4 and 6)."""
import errno
import os
import subprocess
import sys
import threading
import time

import pytest

from vaegan_jax import files
from vaegan_jax.training import workdir_lock

def test_an_atomic_write_that_fails_leaves_the_old_file_and_nothing_else(tmp_path):
  path = tmp_path / 'numbers.bin'
  files.write_atomically(str(path), lambda file: file.write(b'first'))

  def fail_midway(file):
    file.write(b'half of the sec')
    raise OSError(errno.ENOSPC, 'No space left on device')
  with pytest.raises(OSError, match='No space left'):
    files.write_atomically(str(path), fail_midway)
  assert path.read_bytes() == b'first' and os.listdir(tmp_path) == ['numbers.bin']


HOLD_SCRIPT = '''
import sys, time
from vaegan_jax import files
with files.FileLock(sys.argv[1], wait=False):
  print('held', flush=True)
  time.sleep(600)
'''


def test_only_regular_files_under_the_cap_are_read(tmp_path):
  small = tmp_path / 'small.bin'
  small.write_bytes(b'x' * 100)
  assert files.read_regular_file(str(small), 100) == b'x' * 100
  with pytest.raises(files.UnsafeFile, match='100 bytes, over the limit of 99 .raise it with '
                                             '--cap'):
    files.read_regular_file(str(small), 99, '--cap')
  zero = tmp_path / 'zero.png'
  zero.symlink_to('/dev/zero')                 # grew to 7.7 GB before
  fifo = tmp_path / 'fifo.png'
  os.mkfifo(fifo)                              # hung forever before
  for path in (zero, fifo):
    started = time.monotonic()
    with pytest.raises(files.UnsafeFile, match='not a regular file'):
      files.read_regular_file(str(path), 1 << 20)
    with pytest.raises(files.UnsafeFile, match='not a regular file'):
      files.read_head(str(path), 16)
    assert time.monotonic() - started < 5


def test_a_link_planted_as_the_workdir_lock_is_refused_and_its_target_kept(tmp_path):
  victim = tmp_path / 'victim'
  victim.write_text('precious')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / workdir_lock.LOCK_NAME).symlink_to(victim)
  with pytest.raises(files.UnsafeFile, match='is a symbolic link'):
    with workdir_lock.WorkdirLock(str(workdir)):
      pass
  assert victim.read_text() == 'precious'


def test_the_write_probe_never_writes_through_a_planted_link(tmp_path):
  victim = tmp_path / 'victim'
  victim.write_text('precious')
  folder = tmp_path / 'data'
  folder.mkdir()
  for name in ('.write_test_0', '.write_test_1', f'.write_test_{os.getpid()}'):
    (folder / name).symlink_to(victim)         # the old probe's fixed names
  files.check_writable_folder(str(folder), 'data_dir', '--data_dir')
  assert victim.read_text() == 'precious'
  with pytest.raises(files.FolderError, match=f'data_dir {victim} is a file, not a folder; give '
                                              '--data_dir a folder'):
    files.check_writable_folder(str(victim), 'data_dir', '--data_dir')
  with pytest.raises(files.FolderError, match='data_dir is empty; give a folder with --data_dir'):
    files.check_writable_folder('', 'data_dir', '--data_dir')


def test_a_lock_held_by_another_process_names_it_then_frees_when_it_dies(tmp_path):
  path = str(tmp_path / '.lock')
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
       os.environ.get('PYTHONPATH', '')]))
  holder = subprocess.Popen([sys.executable, '-c', HOLD_SCRIPT, path], stdout=subprocess.PIPE,
                            text=True, env=env)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(files.LockBusy, match=f'process {holder.pid} on '):
      with files.FileLock(path, wait=False):
        pass
  finally:
    holder.kill()
    holder.wait()
  with files.FileLock(path, wait=False) as lock:   # a SIGKILLed holder leaves no stale lock
    assert lock.held


def test_make_once_runs_once_while_the_others_wait(tmp_path):
  """Two makers at once (threads: flock locks separate opens of a file against each other):
  the second waits for the first, then finds the result."""
  result = tmp_path / 'result'
  calls = []

  def make():
    calls.append(1)
    time.sleep(0.3)
    result.write_text('made')

  workers = [threading.Thread(target=files.make_once, args=(
      str(tmp_path), 'result', result.exists, make, 'the result')) for _ in range(3)]
  for worker in workers:
    worker.start()
  for worker in workers:
    worker.join()
  assert len(calls) == 1 and result.read_text() == 'made'


def test_make_once_takes_no_lock_where_the_result_exists(tmp_path):
  """A read-only shared folder that holds the result is read as it is: no lock file needed."""
  files.make_once(str(tmp_path / 'nowhere'), 'result', lambda: True,
                  lambda: pytest.fail('made again'), 'the result')
  assert not (tmp_path / 'nowhere').exists()


def test_where_no_lock_can_be_taken_one_line_says_so_and_the_work_goes_on(tmp_path, monkeypatch):
  """Some FUSE and network mounts refuse flock (ENOLCK): the lock is skipped with a warning, and
  `held` tells callers to keep to what is safe without it (prepare then leaves incomplete.*
  folders alone)."""
  def refused(descriptor, operation):
    raise OSError(errno.ENOLCK, 'No locks available')
  monkeypatch.setattr(files.fcntl, 'flock', refused)
  warnings = []
  monkeypatch.setattr(files.logging, 'warning', lambda message, *args: warnings.append(
      message % args))
  with files.FileLock(str(tmp_path / '.lock'), wait=True, what='the dataset') as lock:
    assert not lock.held
  assert warnings == [f'Cannot lock {tmp_path}/.lock (No locks available): the dataset is not '
                      f'protected against a second process.']
