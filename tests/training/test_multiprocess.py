"""2 processes x 2 CPU devices (gloo collectives on localhost) end with the same parameters as
1 process x 4 devices on the same global batches."""
import socket
import subprocess
import sys

import numpy as np

from tiny_runs import subprocess_env
from vaegan_jax.configs import tiny
from vaegan_jax.data import prepare

STEPS = 4

RUN = '''
import os, sys
if __name__ == '__main__':      # the guard keeps spawned helper processes from rerunning this
  process_id, process_count, devices, port, workdir, data_dir, out = sys.argv[1:]
  import jax
  import numpy as np
  if int(process_count) > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(f'127.0.0.1:{port}', int(process_count), int(process_id))
  from vaegan_jax.training import train
  from vaegan_jax.configs import tiny
  config = tiny.get_config()
  config.data.data_dir = data_dir
  config.num_train_steps = int(os.environ['STEPS'])
  # Every report, grid and checkpoint once, after the last step: the parameters are compared.
  for interval in ('log_every_steps', 'image_every_steps', 'eval_every_steps',
                   'checkpoint_every_steps'):
    config[interval] = config.num_train_steps
  final = train.train_and_evaluate(config, workdir)
  assert jax.process_count() == int(process_count), jax.process_count()
  assert jax.local_device_count() == int(devices)
  if jax.process_index() == 0:
    np.savez(out, *[np.asarray(jax.device_get(leaf)) for leaf in jax.tree.leaves(final)])
'''


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def launch(process_id, process_count, devices, port, workdir, data_dir, out):
  return subprocess.Popen(
      [sys.executable, '-c', RUN, str(process_id), str(process_count), str(devices), str(port),
       workdir, data_dir, out],
      env=subprocess_env(devices, STEPS=str(STEPS)), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)


def finish(process):
  output, _ = process.communicate(timeout=600)
  assert process.returncode == 0, output[-3000:]


def test_two_processes_match_one(tmp_path):
  data_dir = str(tmp_path / 'data')
  config = tiny.get_config()
  config.data.data_dir = data_dir
  prepare.ensure_prepared(config.data, config.model.resolution, config.model.image_channels)
  port = free_port()
  pair = [launch(index, 2, 2, port, str(tmp_path / 'two'), data_dir, str(tmp_path / 'two.npz'))
          for index in range(2)]
  for process in pair:
    finish(process)
  finish(launch(0, 1, 4, 0, str(tmp_path / 'one'), data_dir, str(tmp_path / 'one.npz')))

  two, one = np.load(tmp_path / 'two.npz'), np.load(tmp_path / 'one.npz')
  assert len(one.files) == len(two.files) > 50
  assert int(one['arr_0']) == int(two['arr_0']) == STEPS          # the step counter
  for name in one.files:
    # Same math; only the order of float32 sums across processes differs.
    np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-6, err_msg=name)

