"""Helpers for tests that train the tiny config end to end, in this process or in another."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from conftest import PLATFORM, cpu_xla_flags
from vaegan_jax.configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(devices: int | None = 1, **extra: str) -> dict[str, str]:
  """The environment of a process a test starts, with this project importable: on the CPU with
  `devices` fake devices and the suite's XLA flag (conftest.FAST_COMPILE); devices=None: on the
  suite's own platform (a GPU where the suite runs on one), with no flags of ours there."""
  if devices is None and PLATFORM != 'cpu':
    return dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='', **extra)
  return dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu',
              XLA_FLAGS=cpu_xla_flags(devices or 1), **extra)


def tiny_run_config(data_dir, **overrides):
  config = tiny.get_config()
  config.data.data_dir = data_dir
  config.update(overrides)
  return config


def initialised_runs(root, kinds):
  """One checkpoint at step 0 per tiny config argument in `kinds` ('vaegan,conditional' is
  saved as root/vaegan_conditional), freshly initialised, since readers take any state, and the
  prepared synthetic dataset they name, in root/data: {name: workdir}."""
  from vaegan_jax import folders
  from vaegan_jax.data import prepare
  from vaegan_jax.training import checkpoints, state
  workdirs = {}
  for seed, kind in enumerate(kinds):
    config = tiny.get_config(kind)
    config.data.data_dir = str(root / 'data')
    name = kind.replace(',conditional', '_conditional')
    with checkpoints.Checkpointer(folders.Folder(str(root / name)).make(), keep=1) as saver:
      saver.save(0, state.create_training(config, seed=seed).initial_state, {'next_batch': 0},
                 config)
    workdirs[name] = str(root / name)
  prepare.ensure_prepared(config.data, 16, 3)
  return workdirs


def leaves(tree):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


RUN_SCRIPT = '''
import sys
from vaegan_jax.configs import tiny
from vaegan_jax.training import train
config = tiny.get_config()
config.data.data_dir = sys.argv[2]
config.num_train_steps = int(sys.argv[3])
config.checkpoint_every_steps = int(sys.argv[4])
config.log_every_steps = int(sys.argv[5])
config.keep_checkpoints = int(sys.argv[6])
config.steps_per_dispatch = int(sys.argv[7])
if sys.argv[8]:
  config.image_every_steps = config.eval_every_steps = int(sys.argv[8])
  config.quality.every_steps = int(sys.argv[8])
train.train_and_evaluate(config, sys.argv[1])
'''


def run_in_subprocess(workdir, data_dir, steps, checkpoint_every, log_every=2, keep=2,
                      stderr=subprocess.DEVNULL, steps_per_dispatch=1, evaluate_every=None):
  """The tiny config trained in another process (8 CPU devices), for kills, locks and
  readers beside a running trainer; evaluate_every sets the grids', evaluations' and sample
  quality's interval (default: the tiny config's)."""
  return subprocess.Popen([sys.executable, '-c', RUN_SCRIPT, workdir, data_dir, str(steps),
                           str(checkpoint_every), str(log_every), str(keep),
                           str(steps_per_dispatch), str(evaluate_every or '')],
                          env=subprocess_env(8), stdout=subprocess.DEVNULL,
                          stderr=stderr)


def kill_once_saved(process, workdir, step, steps):
  """SIGKILL the trainer `process` once its checkpoint at `step` exists, and check that it had
  not reached its last step (`steps`) by then."""
  deadline = time.time() + 300
  while time.time() < deadline and not os.path.isdir(os.path.join(workdir, 'checkpoints',
                                                                  str(step))):
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = sorted(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints'))
                 if name.isdigit())
  assert saved and saved[-1] < steps, f'the run finished before the kill: {saved}'
