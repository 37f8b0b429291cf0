r"""Kill a training run again and again at random moments, resume it each time, and compare it
with a run never interrupted: the parameters bit for bit, and metrics.jsonl record for record
(all but images_per_s).

  python experiments/kill_and_resume.py --out=/tmp/kills             # 20 kills (a few minutes)
  python experiments/kill_and_resume.py --out=/tmp/kills --kills=2   # as the smoke test runs it

The run is the tiny config (16x16, 8 CPU devices) with checkpoints every 2 steps and reports
every 3, so kills land during start-up, mid-training and while a checkpoint is written, and the
report window in progress is carried across resumes. Prints one JSON line; exits 1 on a
difference.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from absl import flags

from vaegan_jax import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OUT = flags.DEFINE_string('out', None, 'Folder for the runs and the prepared data.',
                           required=True)
_KILLS = flags.DEFINE_integer('kills', 20, 'How many times the interrupted run is SIGKILLed.')
_STEPS = flags.DEFINE_integer('steps', 30, 'Training steps of each run.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the kill times.')

RUN = '''
import os, sys
flags = os.environ.get('XLA_FLAGS', '')      # the caller's, with 8 CPU devices
os.environ['XLA_FLAGS'] = flags + ' --xla_force_host_platform_device_count=8'
os.environ['JAX_PLATFORMS'] = 'cpu'
import jax, numpy as np
from vaegan_jax.configs import tiny
from vaegan_jax.training import train
config = tiny.get_config()
config.data.data_dir, config.num_train_steps = sys.argv[2], int(sys.argv[3])
config.checkpoint_every_steps, config.log_every_steps = 2, 3
final = train.train_and_evaluate(config, sys.argv[1])
if len(sys.argv) > 4:
  np.savez(sys.argv[4], *[np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(final))])
'''


def start(workdir: str, data_dir: str, steps: int, params_out: str | None = None
          ) -> subprocess.Popen:
  command = [sys.executable, '-c', RUN, workdir, data_dir, str(steps)]
  return subprocess.Popen(command + ([params_out] if params_out else []), cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as file:
    lines = [json.loads(line) for line in file]
  for line in lines:
    line.pop('images_per_s', None)
  return lines


def main(argv: list[str]) -> None:
  del argv
  import numpy as np
  out, steps = os.path.abspath(_OUT.value), _STEPS.value
  data_dir = os.path.join(out, 'data')
  whole, killed = os.path.join(out, 'whole'), os.path.join(out, 'killed')
  start_time = time.time()
  # The uninterrupted run also prepares the data, and times one run for the kill moments.
  if start(whole, data_dir, steps, os.path.join(out, 'whole.npz')).wait() != 0:
    raise SystemExit('The uninterrupted run failed.')
  run_seconds = time.time() - start_time
  draw = random.Random(_SEED.value)
  moments = []
  for _ in range(_KILLS.value):
    moment = draw.uniform(0.1, 1.0) * run_seconds
    process = start(killed, data_dir, steps)
    try:
      process.wait(timeout=moment)          # it finished before the kill: start again anyway
    except subprocess.TimeoutExpired:
      process.send_signal(signal.SIGKILL)
      process.wait()
    moments.append(round(moment, 1))
  if start(killed, data_dir, steps, os.path.join(out, 'killed.npz')).wait() != 0:
    raise SystemExit('The resumed run failed.')

  expected, got = np.load(os.path.join(out, 'whole.npz')), np.load(os.path.join(out, 'killed.npz'))
  same_parameters = all(np.array_equal(expected[name], got[name]) for name in expected.files)
  same_metrics = records(whole) == records(killed)
  print(json.dumps(dict(kills=_KILLS.value, steps=steps, kill_seconds=moments,
                        same_parameters=same_parameters, same_metrics=same_metrics,
                        seconds=round(time.time() - start_time, 1))))
  if not (same_parameters and same_metrics):
    raise SystemExit(1)


if __name__ == '__main__':
  console.run_main('kill_and_resume.py', main)
