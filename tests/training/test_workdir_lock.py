"""workdir_lock.py: a second trainer on the same workdir stops at once, naming the first."""
import os
import signal
import subprocess
import sys

import pytest

from tiny_runs import REPO, tiny_run_config
from vaegan_jax.training import train, workdir_lock


def test_a_second_trainer_on_the_same_workdir_stops_at_once(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from vaegan_jax import folders\n'
       'from vaegan_jax.training import workdir_lock\n'
       'with workdir_lock.WorkdirLock(folders.Folder(sys.argv[1])):\n'
       '  print("held", flush=True); time.sleep(600)',
       workdir], env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'held'
  config = tiny_run_config(data_dir, num_train_steps=2)
  with pytest.raises(workdir_lock.WorkdirBusy, match=f'in use by process {holder.pid} on '):
    train.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'metrics.jsonl'))   # nothing was touched

  holder.send_signal(signal.SIGKILL)         # a dead holder's lock blocks nothing
  holder.wait()
  assert int(train.train_and_evaluate(config, workdir).step) == 2
