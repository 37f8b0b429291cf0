"""folders.py: every write under a folder goes through no planted link (SECURITY.md), whole or not
at all; the locks that let runs started side by side share one data_dir; and the first failure
is the one raised (console.closing_after)."""
import errno
import os
import subprocess
import sys
import threading
import time

import pytest

from vaegan_jax import console, files, folders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def victims(tmp_path):
  """A folder and a file outside the folder written, and what they hold."""
  outside = tmp_path / 'outside'
  (outside / 'folder').mkdir(parents=True)
  (outside / 'folder' / 'kept').write_text('precious')
  (outside / 'file').write_text('precious')
  return outside


def outside_unchanged(outside):
  return (sorted(os.listdir(outside)) == ['file', 'folder']
          and (outside / 'file').read_text() == 'precious'
          and os.listdir(outside / 'folder') == ['kept'])


WRITES = {
    'write_atomically': lambda folder, entry: folder.write_atomically(
        entry, lambda file: file.write(b'new')),
    'open_append': lambda folder, entry: folder.open_append(entry).close(),
    'open_new': lambda folder, entry: folder.open_new(entry).close(),
    'make_folder': lambda folder, entry: folder.make_folder(entry),
    'sub': lambda folder, entry: folder.sub(entry),
    'lock': lambda folder, entry: folders.FileLock(folder, entry, wait=False).__enter__(),
}


@pytest.mark.parametrize('write', sorted(WRITES))
def test_a_link_on_the_way_refuses_every_write_and_nothing_outside_changes(tmp_path, victims,
                                                                           write):
  folder = folders.Folder(str(tmp_path / 'run')).make()
  for planted in ('to_folder', 'dangling', 'fifo'):
    path = tmp_path / 'run' / planted
    if planted == 'fifo':
      os.mkfifo(path)
    else:
      path.symlink_to(victims / ('folder' if planted == 'to_folder' else 'nowhere'))
    started = time.monotonic()
    with pytest.raises(files.UnsafeFile, match=f'{path} is a (symbolic link|FIFO, socket or '
                                               f'device), which vaegan_jax does not write '
                                               f'through'):
      WRITES[write](folder, f'{planted}/inner')
    assert time.monotonic() - started < 5
  assert outside_unchanged(victims)


@pytest.mark.parametrize('write', ['open_append', 'open_new', 'lock'])
def test_a_file_written_in_place_is_refused_if_it_is_a_link_a_hard_link_a_fifo_or_a_folder(
    tmp_path, victims, write):
  folder = folders.Folder(str(tmp_path / 'run')).make()
  (tmp_path / 'run' / 'symbolic').symlink_to(victims / 'file')
  (tmp_path / 'run' / 'dangling').symlink_to(victims / 'created')
  os.link(victims / 'file', tmp_path / 'run' / 'hard')
  os.mkfifo(tmp_path / 'run' / 'fifo')                  # no reader: must not block
  (tmp_path / 'run' / 'folder').mkdir()
  found = {'symbolic': 'a symbolic link', 'dangling': 'a symbolic link',
           'hard': 'a file with 2 hard links', 'fifo': 'a FIFO, socket or device',
           'folder': 'a folder'}
  for entry, what in found.items():
    with pytest.raises(files.UnsafeFile, match=f'{tmp_path}/run/{entry} is {what}, which'):
      WRITES[write](folder, entry)
  assert outside_unchanged(victims)


def test_an_atomic_write_replaces_a_planted_entry_instead_of_writing_through_it(tmp_path,
                                                                                victims):
  folder = folders.Folder(str(tmp_path / 'run')).make()
  (tmp_path / 'run' / 'symbolic').symlink_to(victims / 'file')
  os.link(victims / 'file', tmp_path / 'run' / 'hard')
  for entry in ('symbolic', 'hard'):
    folder.write_atomically(entry, lambda file: file.write(b'new'))
    assert (tmp_path / 'run' / entry).read_bytes() == b'new'
    assert not (tmp_path / 'run' / entry).is_symlink()
  assert outside_unchanged(victims)


def test_paths_that_leave_the_folder_are_refused(tmp_path):
  folder = folders.Folder(str(tmp_path / 'run')).make()
  for entry in ('../escaped', 'a/../../escaped', '/tmp/escaped', 'a//b', '.'):
    with pytest.raises(files.UnsafeFile, match='is not a plain path below'):
      folder.write_atomically(entry, lambda file: file.write(b'x'))
  assert os.listdir(tmp_path) == ['run'] and os.listdir(tmp_path / 'run') == []


def test_the_folder_itself_may_be_a_link(tmp_path):
  """Users link runs/ to a scratch disk: the root is followed, what lies below it is not."""
  (tmp_path / 'scratch').mkdir()
  (tmp_path / 'runs').symlink_to(tmp_path / 'scratch')
  folder = folders.Folder(str(tmp_path / 'runs')).make()
  folder.sub('run').write_atomically('metrics.jsonl', lambda file: file.write(b'{}\n'))
  assert (tmp_path / 'scratch' / 'run' / 'metrics.jsonl').read_bytes() == b'{}\n'


def test_a_tree_with_a_link_anywhere_is_not_plain(tmp_path, victims):
  folder = folders.Folder(str(tmp_path / 'run')).make()
  folder.write_atomically('checkpoints/3/state/data', lambda file: file.write(b'x'))
  folder.check_plain('checkpoints')
  deep = tmp_path / 'run' / 'checkpoints' / '3' / 'state' / 'planted'
  deep.symlink_to(victims / 'folder')
  with pytest.raises(files.UnsafeFile, match=f'{deep} is a symbolic link'):
    folder.check_plain('checkpoints')
  deep.unlink()
  os.link(victims / 'file', deep)
  with pytest.raises(files.UnsafeFile, match=f'{deep} is a file with 2 hard links'):
    folder.check_plain('checkpoints')


def test_moving_and_removing_never_follow_a_link(tmp_path, victims):
  folder = folders.Folder(str(tmp_path / 'run')).make()
  folder.write_atomically('checkpoints/20/data', lambda file: file.write(b'damaged'))
  (tmp_path / 'run' / 'aside').symlink_to(victims)       # the trainer deleted victim/20 before
  with pytest.raises(files.UnsafeFile, match='aside is a symbolic link'):
    folder.move('checkpoints/20', 'aside/20')
  (tmp_path / 'run' / 'link').symlink_to(victims / 'folder')
  folder.remove_tree('link')                             # the link goes, its target stays
  assert not os.path.lexists(tmp_path / 'run' / 'link') and outside_unchanged(victims)
  folder.move('checkpoints/20', 'kept/20')
  assert (tmp_path / 'run' / 'kept' / '20' / 'data').read_bytes() == b'damaged'


def test_an_atomic_write_that_fails_leaves_the_old_file_and_nothing_else(tmp_path):
  path = tmp_path / 'numbers.bin'
  folders.write_atomically(str(path), lambda file: file.write(b'first'))

  def fail_midway(file):
    file.write(b'half of the sec')
    raise OSError(errno.ENOSPC, 'No space left on device')
  with pytest.raises(OSError, match='No space left'):
    folders.write_atomically(str(path), fail_midway)
  assert path.read_bytes() == b'first' and os.listdir(tmp_path) == ['numbers.bin']


def test_the_write_probe_never_writes_through_a_planted_link(tmp_path, victims):
  folder = tmp_path / 'data'
  folder.mkdir()
  for name in ('.write_test_0', '.write_test_1', f'.write_test_{os.getpid()}'):
    (folder / name).symlink_to(victims / 'file')         # the old probe's fixed names
  folders.Folder(str(folder), 'data_dir', '--data_dir').make()
  assert outside_unchanged(victims)
  with pytest.raises(folders.FolderError, match=f'data_dir {victims}/file is a file, not a '
                                                'folder; give --data_dir a folder'):
    folders.Folder(str(victims / 'file'), 'data_dir', '--data_dir').make()
  with pytest.raises(folders.FolderError, match='data_dir is empty; give a folder with '
                                                '--data_dir'):
    folders.Folder('', 'data_dir', '--data_dir').make()


HOLD_SCRIPT = '''
import sys, time
from vaegan_jax import folders
with folders.FileLock(folders.Folder(sys.argv[1]), '.lock', wait=False):
  print('held', flush=True)
  time.sleep(600)
'''


def test_a_lock_held_by_another_process_names_it_then_frees_when_it_dies(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
  holder = subprocess.Popen([sys.executable, '-c', HOLD_SCRIPT, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, env=env)
  folder = folders.Folder(str(tmp_path))
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(folders.LockBusy, match=f'process {holder.pid} on '):
      with folders.FileLock(folder, '.lock', wait=False):
        pass
  finally:
    holder.kill()
    holder.wait()
  with folders.FileLock(folder, '.lock', wait=False) as lock:   # a SIGKILLed holder: no stale lock
    assert lock.held


def test_a_removed_lock_file_goes_only_while_held_and_a_late_locker_starts_over(tmp_path,
                                                                               monkeypatch):
  """remove=True deletes the file on exit, still holding it. A process that opened the file
  before that and locks it after must not believe it holds the lock: its file is no longer the
  one the name leads to, so it opens the name afresh."""
  folder = folders.Folder(str(tmp_path))
  with folders.FileLock(folder, '.lock', wait=False, remove=True) as lock:
    assert lock.held and (tmp_path / '.lock').exists()
  assert not (tmp_path / '.lock').exists()

  first = folders.FileLock(folder, '.lock', wait=False, remove=True).__enter__()
  real_open, opened = folder.open_in_place, []

  def open_then_let_the_first_go(relative, flags):
    descriptor = real_open(relative, flags)
    if not opened:                  # the late locker has the old file open: now the first exits
      opened.append(descriptor)
      threading.Timer(0.3, first.__exit__, (None, None, None)).start()
    return descriptor
  monkeypatch.setattr(folder, 'open_in_place', open_then_let_the_first_go)
  with folders.FileLock(folder, '.lock', wait=True) as late:
    held, current = os.fstat(late._descriptor), os.stat(tmp_path / '.lock')
    assert (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def test_make_once_runs_once_while_the_others_wait(tmp_path):
  """Two makers at once (threads: flock locks separate opens of a file against each other):
  the second waits for the first, then finds the result."""
  result = tmp_path / 'result'
  calls = []

  def make():
    calls.append(1)
    time.sleep(0.3)
    result.write_text('made')

  folder = folders.Folder(str(tmp_path))
  workers = [threading.Thread(target=folders.make_once, args=(
      folder, 'result', result.exists, make, 'the result')) for _ in range(3)]
  for worker in workers:
    worker.start()
  for worker in workers:
    worker.join()
  assert len(calls) == 1 and result.read_text() == 'made'


def test_make_once_takes_no_lock_where_the_result_exists(tmp_path):
  """A read-only shared folder that holds the result is read as it is: no lock file needed."""
  folders.make_once(folders.Folder(str(tmp_path / 'nowhere')), 'result', lambda: True,
                    lambda: pytest.fail('made again'), 'the result')
  assert not (tmp_path / 'nowhere').exists()


def test_where_no_lock_can_be_taken_one_line_says_so_and_the_work_goes_on(tmp_path, monkeypatch):
  """Some FUSE and network mounts refuse flock (ENOLCK): the lock is skipped with a warning, and
  `held` tells callers to keep to what is safe without it (prepare then leaves incomplete.*
  folders alone)."""
  def refused(descriptor, operation):
    raise OSError(errno.ENOLCK, 'No locks available')
  monkeypatch.setattr(folders.fcntl, 'flock', refused)
  warnings = []
  monkeypatch.setattr(folders.logging, 'warning', lambda message, *args: warnings.append(
      message % args))
  with folders.FileLock(folders.Folder(str(tmp_path)), '.lock', wait=True,
                        what='the dataset') as lock:
    assert not lock.held
  assert warnings == [f'Cannot lock {tmp_path}/.lock (No locks available): the dataset is not '
                      f'protected against a second process.']


def test_the_first_failure_is_raised_and_later_ones_are_logged(monkeypatch):
  logged, closed = [], []
  monkeypatch.setattr(console.logging, 'warning', lambda message, *args: logged.append(
      message % args))

  def failing(what, error):
    def close():
      closed.append(what)
      raise error
    return what, close

  disk_full = OSError(errno.ENOSPC, 'No space left on device')
  with pytest.raises(RuntimeError, match='the checkpoint failed'):
    with console.closing_after(failing('the writer', disk_full), ('the rest', lambda: None)):
      raise RuntimeError('the checkpoint failed')
  assert logged == ['Closing the writer failed too, after the first failure: OSError: [Errno 28] '
                    'No space left on device']
  # With no failure before them, the first close to fail is raised, once every close has run.
  with pytest.raises(OSError, match='No space left'):
    with console.closing_after(failing('first', disk_full), failing('second', ValueError('x'))):
      pass
  assert closed == ['the writer', 'first', 'second']
