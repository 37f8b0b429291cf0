"""Checkpoints that cannot be trusted, two trainers on one workdir, and metrics after a resume."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tiny_runs import REPO, leaves, run_in_subprocess, tiny_run_config
from vaegan_jax import checkpoints, runs, state, train, workdir_lock


def steps_in(folder):
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def files_under(folder):
  return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]


def damage_by_truncation(step_dir):
  """Cut every data file of the saved state in half."""
  for path in files_under(os.path.join(step_dir, 'state')):
    if os.path.basename(os.path.dirname(path)) == 'd':           # ocdbt's data files
      with open(path, 'r+b') as file:
        file.truncate(os.path.getsize(path) // 2)


def damage_by_deletion(step_dir):
  shutil.rmtree(os.path.join(step_dir, 'state'))


def damage_by_nan(step_dir, config):
  """Replace the step with one whose decoder is NaN, written by orbax as a save would be."""
  folder, step = os.path.dirname(step_dir), int(os.path.basename(step_dir))
  target = jax.device_get(state.create_training(config).initial_state)
  with checkpoints.Checkpointer(folder, read_only=True) as reader:
    good, position = reader._read(step, target)
    config_item = reader.saved_config(step)
  bad = good.replace(decoder=good.decoder.replace(params=jax.tree.map(
      lambda leaf: np.full_like(leaf, np.nan), good.decoder.params)))
  staging = step_dir + '.staging'
  writer = ocp.CheckpointManager(staging, item_names=('state', 'input', 'config'))
  writer.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(bad), input=ocp.args.JsonSave(position),
      config=ocp.args.JsonSave(config_item)))
  writer.wait_until_finished()
  writer.close()
  shutil.rmtree(step_dir)
  os.rename(os.path.join(staging, str(step)), step_dir)
  shutil.rmtree(staging)


@pytest.mark.parametrize('damage', ['truncation', 'deletion', 'nan'])
def test_an_unusable_newest_checkpoint_falls_back_to_the_last_good_one(tmp_path, data_dir,
                                                                       damage):
  config = tiny_run_config(data_dir, num_train_steps=6, checkpoint_every_steps=2,
                           keep_checkpoints=2)
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / 'whole'))

  workdir = str(tmp_path / 'damaged')
  train.train_and_evaluate(tiny_run_config(data_dir, num_train_steps=4, checkpoint_every_steps=2,
                                           keep_checkpoints=2), workdir)
  folder = os.path.join(workdir, 'checkpoints')
  assert steps_in(folder) == [2, 4]
  if damage == 'nan':
    damage_by_nan(os.path.join(folder, '4'), config)
  else:
    {'truncation': damage_by_truncation, 'deletion': damage_by_deletion}[damage](
        os.path.join(folder, '4'))

  resumed = train.train_and_evaluate(config, workdir)      # from step 2, then on to 6
  for a, b in zip(leaves(uninterrupted), leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert steps_in(folder) == [4, 6]                         # saved again, and rotated after
  assert steps_in(folder + checkpoints.UNUSABLE_SUFFIX) == [4]  # the damaged one, kept aside


def test_no_usable_checkpoint_is_one_message(tmp_path, data_dir):
  config = tiny_run_config(data_dir, num_train_steps=2, checkpoint_every_steps=2)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  damage_by_deletion(os.path.join(workdir, 'checkpoints', '2'))
  command = [sys.executable, '-m', 'vaegan_jax.main', f'--workdir={workdir}',
             '--config=vaegan_jax/configs/tiny.py', f'--config.data.data_dir={data_dir}',
             '--config.num_train_steps=4']
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='', JAX_PLATFORMS='cpu'))
  assert failed.returncode != 0
  assert 'vaegan-train: No checkpoint in' in failed.stderr and 'step 2: it cannot be read' in (
      failed.stderr)
  assert 'Traceback' not in failed.stderr


def test_rotation_waits_until_the_newest_checkpoint_is_read_back(tmp_path, data_dir):
  config = tiny_run_config(data_dir)
  initial = state.create_training(config).initial_state
  folder = str(tmp_path / 'checkpoints')
  checkpointer = checkpoints.Checkpointer(folder, keep=1)
  checkpointer.save(1, initial, {'next_batch': 1}, config)
  checkpointer.save(2, initial, {'next_batch': 2}, config)
  checkpointer.manager.wait_until_finished()
  assert steps_in(folder) == [1, 2]          # step 2 not yet verified: step 1 stays
  checkpointer.close()                       # reads step 2 back, then rotates
  assert steps_in(folder) == [2]


def test_a_second_trainer_on_the_same_workdir_stops_at_once(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from vaegan_jax import workdir_lock\n'
       'with workdir_lock.WorkdirLock(sys.argv[1]):\n  print("held", flush=True); time.sleep(600)',
       workdir], env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'held'
  config = tiny_run_config(data_dir, num_train_steps=2)
  with pytest.raises(workdir_lock.WorkdirBusy, match=f'in use by process {holder.pid} on '):
    train.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'metrics.jsonl'))   # nothing was touched

  holder.send_signal(signal.SIGKILL)         # a dead holder's lock blocks nothing
  holder.wait()
  assert int(train.train_and_evaluate(config, workdir).step) == 2


def records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as file:
    lines = [json.loads(line) for line in file]
  for line in lines:
    line.pop('images_per_s', None)           # the one value that depends on the clock
  return lines


def test_metrics_after_a_kill_and_resume_equal_the_uninterrupted_run(tmp_path, data_dir):
  # Checkpoints every 2 steps and reports every 3, so that the report window in progress is
  # saved with a checkpoint and continued after the resume.
  steps, checkpoint_every, log_every = 9, 2, 3
  config = tiny_run_config(data_dir, num_train_steps=steps,
                           checkpoint_every_steps=checkpoint_every, log_every_steps=log_every)
  train.train_and_evaluate(config, str(tmp_path / 'whole'))

  workdir = str(tmp_path / 'killed')
  for kill_after in (4, 6):
    process = run_in_subprocess(workdir, data_dir, steps, checkpoint_every, log_every)
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.isdir(
        os.path.join(workdir, 'checkpoints', str(kill_after))):
      time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
  train.train_and_evaluate(config, workdir)

  whole, resumed = records(str(tmp_path / 'whole')), records(workdir)
  assert [(line['step'], line['kind']) for line in resumed] == [
      (line['step'], line['kind']) for line in whole]
  for expected, got in zip(whole, resumed):
    assert got == expected, (got['step'], got['kind'])


def test_a_run_is_read_while_its_trainer_saves_and_rotates_every_step(tmp_path, data_dir):
  # The race: a checkpoint every step, one kept, so the step a reader picks is often
  # deleted while it reads. Every read must succeed, on a finite state, never going backwards,
  # until the trainer has saved 5 steps more than the first read saw.
  workdir = str(tmp_path / 'training')
  log = open(tmp_path / 'trainer.log', 'w+')
  trainer = run_in_subprocess(workdir, data_dir, 100_000, checkpoint_every=1, log_every=1000,
                              keep=1, stderr=log)
  trainer_failed = lambda: f'the trainer stopped: {open(log.name).read()[-2000:]}'
  try:
    folder = os.path.join(workdir, 'checkpoints')
    deadline = time.time() + 300
    while not (os.path.isdir(folder) and steps_in(folder)):
      assert trainer.poll() is None, trainer_failed()
      assert time.time() < deadline, 'no checkpoint within 300 s'
      time.sleep(0.05)
    read_steps = []
    while len(read_steps) < 5 or read_steps[-1] < read_steps[0] + 5:
      assert trainer.poll() is None, trainer_failed()
      assert time.time() < deadline, f'the trainer saved too slowly: read {read_steps}'
      run = runs.load_run(workdir)
      assert checkpoints.first_non_finite_leaf(jax.device_get(run.state)) is None
      read_steps.append(run.step)
    assert read_steps == sorted(read_steps), read_steps
  finally:
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    log.close()


def test_figures_refuse_a_run_whose_only_checkpoint_holds_nan(tmp_path, data_dir):
  config = tiny_run_config(data_dir, num_train_steps=2, checkpoint_every_steps=2)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  damage_by_nan(os.path.join(workdir, 'checkpoints', '2'), config)
  command = [sys.executable, '-m', 'vaegan_jax.figures', '--figure=reconstructions',
             f'--run=nan={workdir}', f'--out={tmp_path / "figures"}']
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='', JAX_PLATFORMS='cpu'))
  assert failed.returncode != 0
  assert 'vaegan-figures: No checkpoint in' in failed.stderr, failed.stderr[-2000:]
  assert 'step 2: .decoder' in failed.stderr and 'holds NaN or Inf' in failed.stderr
  assert 'Traceback' not in failed.stderr
  assert not os.path.exists(tmp_path / 'figures' / 'reconstructions.json')
  assert steps_in(os.path.join(workdir, 'checkpoints')) == [2]   # a reader moves nothing
