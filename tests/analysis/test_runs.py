"""runs.py: a run read back beside a trainer that saves and rotates every step, and a run whose
only checkpoint holds NaN refused."""
import os
import signal
import subprocess
import sys
import time

import jax

from checkpoint_damage import damage_by_nan, steps_in
from tiny_runs import REPO, run_in_subprocess, subprocess_env, tiny_run_config
from vaegan_jax.analysis import runs
from vaegan_jax.training import checkpoints, train


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
