r"""Train VAE/GAN from the command line.

  python -m vaegan_jax.training.main --workdir=runs/demo                      # or: vaegan-train
  python -m vaegan_jax.training.main --config=vaegan_jax/configs/celeba64.py --workdir=runs/celeba \
      --config.data.raw_dir=~/celeba --config.model.kind=vae

Without --config it trains the embedded default, configs/synthetic.py. Rerunning the same
command continues from the workdir's latest checkpoint. On a TPU pod every worker runs the same
command with --distributed=true (jax finds the pod's settings itself; experiments/ has the
script); on a GPU cluster give --coordinator_address, --num_processes and --process_id, or run
under a launcher jax.distributed reads (SLURM, Open MPI).
"""
from __future__ import annotations

import importlib.util
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from vaegan_jax import console, files, folders, ranges
from vaegan_jax.configs import schema
from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.metrics import inception
from vaegan_jax.model import priors
from vaegan_jax.training import checkpoints, train, workdir_lock

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs',
                              'synthetic.py')

config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Training config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics, TensorBoard files and image grids.',
                    required=True)
flags.DEFINE_enum('distributed', 'auto', ['auto', 'true', 'false'],
                  'Start jax.distributed: true (it finds TPU pod and cluster settings itself), '
                  'false, or auto (when --coordinator_address or a cluster environment is set).')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0, for multi-process runs outside TPU pods.')
flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.',
                     lower_bound=ranges.PROCESSES[0], upper_bound=ranges.PROCESSES[1])
flags.DEFINE_integer('process_id', None, "This process's index in a multi-process run.",
                     lower_bound=0, upper_bound=ranges.PROCESSES[1] - 1)
FLAGS = flags.FLAGS


def in_multi_process_cluster(environment: dict[str, str]) -> bool:
  """A TPU pod slice of several hosts, or a launcher that jax.distributed reads by itself."""
  return (',' in environment.get('TPU_WORKER_HOSTNAMES', '')
          or 'MEGASCALE_COORDINATOR_ADDRESS' in environment
          or 'JAX_COORDINATOR_ADDRESS' in environment
          or int(environment.get('SLURM_NTASKS', '1')) > 1
          or int(environment.get('OMPI_COMM_WORLD_SIZE', '1')) > 1)


def start_processes() -> None:
  """jax.distributed.initialize for a multi-process run; a single process needs nothing."""
  if FLAGS.distributed == 'false':
    return
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif FLAGS.distributed == 'true' or in_multi_process_cluster(dict(os.environ)):
    jax.distributed.initialize()


PROGRAM = 'vaegan-train'
# Failures the user can fix, said in one line (console.run_main).
FAILURES = (schema.ConfigError, DataError, checkpoints.IncompatibleCheckpoint,
            checkpoints.UnusableCheckpoints, workdir_lock.WorkdirBusy, inception.WeightsError,
            folders.FolderError, files.UnsafeFile, train.NonFiniteLoss,
            priors.PriorError)       # a kept fit of quality.sampler that is not one, on resume


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = load_config()
  start_processes()
  logging.info('Process %d of %d, %d local devices (%s).', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.default_backend())
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  except (checkpoints.CheckpointWriteError, folders.WriteFailed) as error:
    # orbax's save threads are no daemons, and after a failed write they may wait minutes for a
    # signal that never comes. What is on disk is whole (each checkpoint is renamed into place
    # when complete), so leave now instead of joining them.
    print(console.failure_line(PROGRAM, error), file=sys.stderr, flush=True)
    os._exit(1)


def config_failure(path: str, error: BaseException) -> str:
  """One line for a config file that cannot be loaded: missing, or raising when it runs."""
  if not os.path.isfile(path.partition(':')[0]):
    return console.failure_line(PROGRAM, f'--config={path}: no such file. Give a config file, '
                                'e.g. vaegan_jax/configs/celeba64.py (or none, for the embedded '
                                'default).')
  detail = str(error).strip().splitlines()
  return console.failure_line(
      PROGRAM, f'the config file {path} cannot be loaded: {type(error).__name__}: '
      f'{detail[-1] if detail else "(no message)"}. It must define get_config() returning an '
      f'ml_collections.ConfigDict.')


def load_config() -> ml_collections.ConfigDict:
  """The --config file's config; config_flags may load it only when it is first used."""
  try:
    FLAGS.config.to_dict()
    return FLAGS.config
  except Exception as error:     # whatever the user's file raises, said in one line
    raise SystemExit(config_failure(config_flags.get_config_filename(FLAGS['config']),
                                    error)) from None


def load_config_file(argv: list[str]) -> ml_collections.ConfigDict:
  """The config that --config names in argv ('path' or 'path:arg'), loaded as config_flags does."""
  value = next((arg.split('=', 1)[1] for arg in argv if arg.startswith('--config=')),
               DEFAULT_CONFIG)
  path, _, config_arg = value.partition(':')
  spec = importlib.util.spec_from_file_location('user_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(config_arg) if config_arg else module.get_config()


def explain_bad_override(argv: list[str], error: Exception) -> str:
  """The parse error, and for an unknown --config.KEY the keys its section does have."""
  message = console.failure_line(PROGRAM, f'{type(error).__name__}: {error}')
  path = next((arg.split('=', 1)[1] for arg in argv if arg.startswith('--config=')),
              DEFAULT_CONFIG)
  try:
    config = load_config_file(argv)
  except Exception as config_error:     # the config file itself is broken
    return config_failure(path, config_error)
  for arg in argv:
    if arg.startswith('--config.'):
      unknown = schema.unknown_key_message(config, arg[len('--config.'):].split('=', 1)[0])
      if unknown:
        return f'{message}\n{unknown}'
  return message


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with config errors reported as one message instead of a traceback."""
  try:
    return FLAGS(argv)
  except Exception as error:    # flags, overrides, or whatever the user's config file raises
    raise SystemExit(explain_bad_override(argv, error)) from None


def run() -> None:
  """Console script `vaegan-train`."""
  console.run_main(PROGRAM, main, FAILURES, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
