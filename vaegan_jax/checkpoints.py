"""Checkpoints with orbax: restore-or-init, save (every process takes part), the last K kept.

A checkpoint holds three items: the TrainState, the training input's position and the config.
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a process
that dies mid-write leaves the last good checkpoint as the latest one. On restore the saved
config is compared with the current one; a difference in anything that shapes the state or the
run (model, loss, optimizer, seed, batch, data order) is refused with the keys that differ. Which
keys may differ is said once, in configs/schema.py (`resumable`).
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from vaegan_jax.configs.schema import RESUMABLE, flatten_config


class IncompatibleCheckpoint(ValueError):
  """The workdir's checkpoint was written by a run with another config."""


def config_differences(saved: dict[str, Any], current: ml_collections.ConfigDict) -> list[str]:
  """'key: checkpoint X, config Y' for every key that differs and may not differ on resume."""
  saved_flat, current_flat = flatten_config(saved), flatten_config(current)
  missing = object()
  differences = []
  for key in sorted(set(saved_flat) | set(current_flat)):
    if key in RESUMABLE:
      continue
    old, new = saved_flat.get(key, missing), current_flat.get(key, missing)
    if old != new:
      describe = lambda value: 'absent' if value is missing else repr(value)
      differences.append(f'{key}: checkpoint {describe(old)}, config {describe(new)}')
  return differences


class Checkpointer:
  """The workdir's checkpoints: `directory` holds one folder per saved step."""

  def __init__(self, directory: str, keep: int | None = None, read_only: bool = False):
    """keep: checkpoints kept when saving (None: all). read_only: only read (the folder must
    exist); nothing is created or deleted."""
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=('state', 'input', 'config'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def saved_config(self, step: int) -> dict[str, Any]:
    """The config (as a dict) that wrote the checkpoint at `step`."""
    return self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))['config']

  def restore(self, target_state: Any, config: ml_collections.ConfigDict
              ) -> tuple[Any, dict[str, Any]] | None:
    """(state, input position) of the latest checkpoint, or None if there is none.

    target_state: a state of the current config; its structure, shapes and dtypes are checked.
    """
    step = self.manager.latest_step()
    if step is None:
      return None
    differences = config_differences(self.saved_config(step), config)
    if differences:
      listing = '\n  '.join(differences)
      raise IncompatibleCheckpoint(
          f'The checkpoint at step {step} in {self.directory} was written with another config:'
          f'\n  {listing}\nRun with the same config to resume it, or give a new --workdir to '
          f'start a new run.')
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(jax.device_get(target_state)),
        input=ocp.args.JsonRestore()))
    return restored['state'], restored['input']

  def save(self, step: int, state: Any, input_state: dict[str, Any],
           config: ml_collections.ConfigDict) -> None:
    """Save on every process (orbax coordinates the writes); returns before the write ends.

    The state is saved as host numpy arrays: it is replicated, and pmap's outputs are arrays
    local to each process, which orbax cannot write as one array in a multi-process run; numpy
    arrays are written once, by the primary process.
    """
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(jax.device_get(state)), input=ocp.args.JsonSave(input_state),
        config=ocp.args.JsonSave(json.loads(json.dumps(config.to_dict())))))

  def wait(self) -> None:
    """Block until the last save is complete on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
