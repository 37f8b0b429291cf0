"""vaegan-train's start-up and mid-run failures end in one line that names the cause and the fix,
with no traceback (issue 20, item 7)."""
import errno
import os
import subprocess
import sys
import time

import pytest

from tiny_runs import REPO

TINY = os.path.join(REPO, 'vaegan_jax', 'configs', 'tiny.py')


def train_command(*args):
  return [sys.executable, '-m', 'vaegan_jax.training.main', *args]


def start(command, cwd):
  return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO))


def last_line_alone(process, timeout=240):
  """The process's last stderr line, after checking it failed without a traceback."""
  _, stderr = process.communicate(timeout=timeout)
  assert process.returncode == 1 and 'Traceback' not in stderr, stderr[-3000:]
  return stderr.strip().splitlines()[-1]


def test_bad_paths_and_config_files_are_one_line_each(tmp_path):
  (tmp_path / 'empty.py').write_text('')
  (tmp_path / 'raising.py').write_text('def get_config():\n  raise RuntimeError("boom")\n')
  (tmp_path / 'broken.py').write_text('x = (\n')
  (tmp_path / 'a_file').write_text('')
  cases = {
      'empty workdir': (['--workdir='], 'vaegan-train: the workdir is empty; give a folder with '
                                        '--workdir.'),
      'workdir is a file': ([f'--workdir={tmp_path}/a_file'],
                            f'vaegan-train: the workdir {tmp_path}/a_file is a file, not a '
                            f'folder; give --workdir a folder.'),
      'missing config': (['--config=missing.py', '--workdir=run'],
                         'vaegan-train: --config=missing.py: no such file. Give a config file, '
                         'e.g. vaegan_jax/configs/celeba64.py (or none, for the embedded '
                         'default).'),
      'missing config with an override': (['--config=missing.py', '--config.seed=3',
                                           '--workdir=run'], 'vaegan-train: --config=missing.py'),
      'empty config': (['--config=empty.py', '--workdir=run'],
                       "vaegan-train: the config file empty.py cannot be loaded: AttributeError: "
                       "module 'user_config' has no attribute 'get_config'"),
      'raising config': (['--config=raising.py', '--workdir=run'],
                         'vaegan-train: the config file raising.py cannot be loaded: '
                         'RuntimeError: boom.'),
      'broken config': (['--config=broken.py', '--workdir=run'],
                        "vaegan-train: the config file broken.py cannot be loaded: SyntaxError: "
                        "'(' was never closed"),
      'data_dir is a file': ([f'--config={TINY}', f'--config.data.data_dir={tmp_path}/a_file',
                              '--workdir=run2'],
                             f'vaegan-train: data_dir {tmp_path}/a_file is a file, not a folder; '
                             f'give --config.data.data_dir a folder.'),
  }
  running = {name: start(train_command(*args), tmp_path) for name, (args, _) in cases.items()}
  for name, process in running.items():
    assert last_line_alone(process).startswith(cases[name][1]), name
  assert not os.path.exists(tmp_path / 'raw')       # nothing was drawn into the working folder


# Every write under WORKDIR fails with errno CAUSE once the file TRIGGER exists, as when a
# workdir's file system turns read-only or fills up mid-run: files opened for writing (orbax's
# metadata, grids, prior fits; by path or relative to a folder's descriptor) and folders made.
# On a full disk, tensorboardX's flushes of its open event file fail too.
FAILING_DISK_SCRIPT = '''
import builtins, errno, os, sys
workdir, trigger, cause = os.path.abspath(sys.argv[1]), sys.argv[2], getattr(errno, sys.argv[3])
real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
def full_path(path, dir_fd):
  path = os.fspath(path)
  return os.path.join(os.readlink(f'/proc/self/fd/{dir_fd}'), path) if dir_fd else path
def refused(path, dir_fd=None):
  return (os.path.exists(trigger)
          and os.path.abspath(full_path(path, dir_fd)).startswith(workdir))
def fail(path):
  raise OSError(cause, os.strerror(cause), os.fspath(path))
def guarded_open(file, mode='r', *args, **kwargs):
  if isinstance(file, (str, os.PathLike)) and set(mode) & set('wax+') and refused(file):
    fail(file)
  return real_open(file, mode, *args, **kwargs)
def guarded_os_open(path, flags, *args, dir_fd=None, **kwargs):
  if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path, dir_fd):
    fail(path)
  return real_os_open(path, flags, *args, dir_fd=dir_fd, **kwargs)
def guarded_mkdir(path, *args, dir_fd=None, **kwargs):
  if refused(path, dir_fd):
    fail(path)
  return real_mkdir(path, *args, dir_fd=dir_fd, **kwargs)
builtins.open, os.open, os.mkdir = guarded_open, guarded_os_open, guarded_mkdir
os.supports_dir_fd.update({guarded_os_open, guarded_mkdir})     # as the real ones
from tensorboardX import record_writer
real_flush = record_writer.RecordWriter.flush
def guarded_flush(self):
  if cause == errno.ENOSPC and os.path.exists(trigger):
    fail(self.path)
  return real_flush(self)
record_writer.RecordWriter.flush = guarded_flush
from vaegan_jax.training import main
sys.argv = ['vaegan-train'] + sys.argv[4:]
main.run()
'''


@pytest.mark.parametrize('first_failure,cause', [('grids', 'EROFS'), ('checkpoint', 'EROFS'),
                                                 ('checkpoint', 'ENOSPC')])
def test_a_workdir_that_fails_mid_run_stops_at_once_with_the_first_cause(tmp_path, data_dir,
                                                                       first_failure, cause):
  """The last line names the first failure and the last good checkpoint, however many closes
  fail after it (on a full disk, tensorboardX's flush failed over the checkpoint's error)."""
  workdir, trigger = tmp_path / 'run', tmp_path / 'failing_now'
  # grids: the first grids (step 3) are written, then those of step 6 fail, long before a
  # checkpoint. checkpoint: no grids, logs or evaluations; the first checkpoint (step 4) is
  # written, the next fails.
  intervals, written, message, kept = {
      'grids': ([3, 1000, 2], workdir / 'images' / 'samples_00000003.png',
                'vaegan-train: Writing the image grids', 'No checkpoint was kept'),
      'checkpoint': ([10_000, 4, 10_000], workdir / 'checkpoints' / '4',
                     'vaegan-train: Saving the checkpoint at step 8',
                     f'The last good checkpoint is step 4 in {workdir}/checkpoints')
  }[first_failure]
  image_every, checkpoint_every, log_every = intervals
  process = start([sys.executable, '-c', FAILING_DISK_SCRIPT, str(workdir), str(trigger), cause,
                   f'--config={TINY}', f'--config.data.data_dir={data_dir}',
                   '--config.num_train_steps=100000', f'--config.image_every_steps={image_every}',
                   f'--config.eval_every_steps={image_every}',
                   f'--config.log_every_steps={log_every}',
                   f'--config.checkpoint_every_steps={checkpoint_every}', f'--workdir={workdir}'],
                  tmp_path)
  deadline = time.time() + 240
  while not written.exists() and time.time() < deadline:
    time.sleep(0.1)
  trigger.write_text('')
  stopped = time.time()
  line = last_line_alone(process)
  assert time.time() - stopped < 60                   # hung 5 minutes on orbax's threads before
  assert line.startswith(message) and os.strerror(getattr(errno, cause)) in line, line
  advice = {'EROFS': 'its file system is read-only: remount it writable',
            'ENOSPC': 'the disk is full: free disk space'}
  assert advice[cause] in line and kept in line, line


def test_a_backend_this_machine_lacks_is_one_line(tmp_path):
  """Issue 45, item 5: JAX_PLATFORMS=tpu on a machine without one gave two tracebacks."""
  process = subprocess.Popen(train_command(f'--config={TINY}', f'--workdir={tmp_path}/run'),
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, PYTHONPATH=REPO,
                                                 JAX_PLATFORMS='tpu'))
  assert last_line_alone(process) == (
      "vaegan-train: JAX_PLATFORMS=tpu asks for a device this machine lacks (jax cannot start "
      "backend 'tpu'). Unset JAX_PLATFORMS to use what is here, or set it to one it has, e.g. "
      "JAX_PLATFORMS=cpu.")
