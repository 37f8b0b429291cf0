"""For the tests of unusable checkpoints: the steps saved in a folder, and three ways to damage
a step (its data cut in half, its state deleted, a NaN state written as orbax writes one)."""
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from vaegan_jax.training import checkpoints, state


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
  with checkpoints.CheckpointReader(folder) as reader:
    good, position = reader._read(step, target)
    config_item = reader.saved_config(step)
  bad = good.replace(decoder=good.decoder.replace(params=jax.tree.map(
      lambda leaf: np.full_like(leaf, np.nan), good.decoder.params)))
  staging = step_dir + '.staging'
  writer = ocp.CheckpointManager(staging, item_names=('state', 'input', 'config'))
  writer.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(checkpoints.on_disk(bad)), input=ocp.args.JsonSave(position),
      config=ocp.args.JsonSave(config_item)))
  writer.wait_until_finished()
  writer.close()
  shutil.rmtree(step_dir)
  os.rename(os.path.join(staging, str(step)), step_dir)
  shutil.rmtree(staging)
