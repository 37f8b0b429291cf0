"""checkpoints.py: a failed write stops with one message and keeps the checkpoints before it;
a truncated, deleted or NaN checkpoint is set aside on restore and the last good one used (a
reader skips it and moves nothing); old ones are deleted only once the newest is read back."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from checkpoint_damage import damage_by_deletion, damage_by_nan, damage_by_truncation, steps_in
from tiny_runs import REPO, leaves, subprocess_env, tiny_run_config
from vaegan_jax.configs import tiny
from vaegan_jax.training import checkpoints, state, train
from vaegan_jax import folders


def test_a_failed_checkpoint_write_stops_with_one_message(tmp_path, monkeypatch):
  config = tiny.get_config()
  initial = state.create_training(config).initial_state
  checkpointer = checkpoints.Checkpointer(folders.Folder(str(tmp_path)), keep=2)
  checkpointer.save(1, initial, {'next_batch': 1}, config)
  checkpointer.wait()
  checkpointer.save(2, initial, {'next_batch': 2}, config)

  def disk_full():
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(checkpointer.manager, 'wait_until_finished', disk_full)
  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=r'at step 2 .*No space left on device.*kept \(steps 1\)'):
    checkpointer.close()
  monkeypatch.undo()                        # let orbax finish its write and stop its threads
  checkpointer.manager.wait_until_finished()
  checkpointer.manager.close()


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
  command = [sys.executable, '-m', 'vaegan_jax.training.main', f'--workdir={workdir}',
             '--config=vaegan_jax/configs/tiny.py', f'--config.data.data_dir={data_dir}',
             '--config.num_train_steps=4']
  failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env=subprocess_env())
  assert failed.returncode != 0
  assert 'vaegan-train: No checkpoint in' in failed.stderr and 'step 2: it cannot be read' in (
      failed.stderr)
  assert 'Traceback' not in failed.stderr


def test_rotation_waits_until_the_newest_checkpoint_is_read_back(tmp_path, data_dir):
  config = tiny_run_config(data_dir)
  initial = state.create_training(config).initial_state
  folder = str(tmp_path / 'checkpoints')
  checkpointer = checkpoints.Checkpointer(folders.Folder(str(tmp_path)), keep=1)
  checkpointer.save(1, initial, {'next_batch': 1}, config)
  checkpointer.save(2, initial, {'next_batch': 2}, config)
  checkpointer.manager.wait_until_finished()
  assert steps_in(folder) == [1, 2]          # step 2 not yet verified: step 1 stays
  checkpointer.close()                       # reads step 2 back, then rotates
  assert steps_in(folder) == [2]


def test_a_reader_skips_an_unusable_checkpoint_and_moves_nothing_the_trainer_moves_it(tmp_path):
  config = tiny.get_config()
  folder = str(tmp_path / 'checkpoints')
  older, newer = (state.create_training(config, seed=seed).initial_state for seed in (1, 2))
  with checkpoints.Checkpointer(folders.Folder(str(tmp_path))) as checkpointer:
    checkpointer.save(1, older, {'next_batch': 1}, config)
    checkpointer.save(2, newer, {'next_batch': 2}, config)
  damage_by_deletion(os.path.join(folder, '2'))
  target = state.create_training(config).initial_state

  with checkpoints.CheckpointReader(folder) as reader:
    restored, position = reader.restore(target, config)
  for a, b in zip(leaves(older), leaves(restored)):
    np.testing.assert_array_equal(a, b)
  assert position == {'next_batch': 1}
  assert steps_in(folder) == [1, 2] and not os.path.exists(folder + checkpoints.UNUSABLE_SUFFIX)

  with checkpoints.Checkpointer(folders.Folder(str(tmp_path))) as checkpointer:
    checkpointer.restore(target, config)
  assert steps_in(folder) == [1] and steps_in(folder + checkpoints.UNUSABLE_SUFFIX) == [2]
