"""runs.py: a run read back beside a trainer that saves and rotates every step, a run whose
only checkpoint holds NaN refused, and what a run folder holds checked before use."""
import json
import os
import signal
import subprocess
import sys
import time

import jax

from checkpoint_damage import damage_by_nan, steps_in
from tiny_runs import REPO, run_in_subprocess, subprocess_env, tiny_run_config
from vaegan_jax.analysis import runs
from vaegan_jax.training import checkpoints, state, train


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
  command = [sys.executable, '-m', 'vaegan_jax.analysis.figures', '--figure=reconstructions',
             f'--run=nan={workdir}', f'--out={tmp_path / "figures"}']
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env=subprocess_env())
  assert failed.returncode != 0
  assert 'vaegan-figures: No checkpoint in' in failed.stderr, failed.stderr[-2000:]
  assert 'step 2: .decoder' in failed.stderr and 'holds NaN or Inf' in failed.stderr
  assert 'Traceback' not in failed.stderr
  assert not os.path.exists(tmp_path / 'figures' / 'reconstructions.json')
  assert steps_in(os.path.join(workdir, 'checkpoints')) == [2]   # a reader moves nothing


def figures_command(*args):
  return subprocess.run([sys.executable, '-m', 'vaegan_jax.analysis.figures', *args], cwd=REPO,
                        capture_output=True, text=True, env=subprocess_env(), timeout=240)


def last_line(done):
  assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr[-3000:]
  return done.stderr.strip().splitlines()[-1]


def test_what_a_run_folder_holds_is_checked_before_use(tmp_path, data_dir):
  """Issue 45, items 3 and 5: a checkpoint's config with a latent size of 400,000,000 (it
  reached 1.96 GB before), an --out that is a file, and a label given twice are each refused in
  one line; a checkpoint whose input position is garbage is set aside, not used."""
  config = tiny_run_config(data_dir, num_train_steps=4, checkpoint_every_steps=2)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  config_file = os.path.join(workdir, 'checkpoints', '4', 'config', 'metadata')
  saved = json.load(open(config_file))
  saved['model']['latent_dim'] = 400_000_000
  json.dump(saved, open(config_file, 'w'))
  line = last_line(figures_command('--figure=samples', f'--run=A={workdir}',
                                   f'--out={tmp_path / "figures"}'))
  assert line == (f'vaegan-figures: The config of the checkpoint {workdir}/checkpoints/4 is not '
                  f'one vaegan-train accepts: model.latent_dim=400000000: must be an integer '
                  f'from 1 to 4,096.')
  saved['model']['latent_dim'] = config.model.latent_dim
  json.dump(saved, open(config_file, 'w'))

  (tmp_path / 'a_file').write_text('')
  assert last_line(figures_command('--figure=samples', f'--run=A={workdir}',
                                   f'--out={tmp_path / "a_file"}')) == (
      f'vaegan-figures: the output folder {tmp_path}/a_file is a file, not a folder; give --out '
      f'a folder.')
  assert last_line(figures_command('--figure=samples', f'--run=A={workdir}', f'--run=A={workdir}',
                                   f'--out={tmp_path / "figures"}')) == (
      f"vaegan-figures: --run='A={workdir}': the label 'A' is given twice; give each run a label "
      f"of its own.")

  input_file = os.path.join(workdir, 'checkpoints', '4', 'input', 'metadata')
  json.dump({'next_batch': 4, 'report_window': 'x'}, open(input_file, 'w'))
  with checkpoints.CheckpointReader(os.path.join(workdir, 'checkpoints')) as reader:
    restored, position = reader.restore(state.create_training(config).initial_state, config)
  assert int(restored.step) == 2 and position['next_batch'] == 2
  for window in ('x', 5, {'steps': -1, 'sums': {}}, {'steps': 1, 'sums': {'loss': 'nan'}}):
    assert checkpoints.input_problem({'next_batch': 4, 'report_window': window}, 4) == (
        'its report window is not a count of steps and finite sums by metric')
  assert checkpoints.input_problem({'next_batch': 3}, 4) == (
      'its input position 3 is not its step, 4')
