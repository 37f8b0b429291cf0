"""Checkpoints with orbax: restore-or-init, save (every process takes part), the last K kept
(Checkpointer, the trainer's); and reading a run beside its trainer (CheckpointReader).

A checkpoint holds three items: the TrainState, the training input's position (with the train
metrics of the report window in progress) and the config. What is promised:
- Orbax writes each checkpoint into a temporary folder and renames it when complete, so a
  process that dies mid-write leaves the last good checkpoint as the latest one.
- A state with a NaN or Inf anywhere (parameters, batch statistics, optimizer state) is never
  saved (`NonFiniteState`).
- Old checkpoints are deleted only after the newest one has been read back, complete and finite:
  rotation never removes the last good checkpoint in favour of an unverified one.
- On restore, a checkpoint that cannot be read, does not match the state's shapes and dtypes, or
  is not finite is moved aside (to `checkpoints-unusable/STEP`, with one log line saying why) and
  the next newest is tried.
- Before orbax restores, saves or rotates, the trainer checks that no entry of the checkpoint
  tree is a link (folders.Folder.check_plain), and it moves checkpoints aside without following
  one: a link planted in a workdir cannot make it write or delete anything outside.
- The saved config is compared with the current one; a difference in anything that shapes the
  state or the run (model, loss, optimizer form, seed, batch, data order) is refused with the keys
  that differ. Which keys may differ is said once, in configs/schema.py (`resumable`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vaegan_jax import console, folders
from vaegan_jax.configs.schema import ADDED_SINCE, RESUMABLE, flatten_config

UNUSABLE_SUFFIX = '-unusable'


class IncompatibleCheckpoint(ValueError):
  """The workdir's checkpoint was written by a run with another config."""


class NonFiniteState(FloatingPointError):
  """A state to be saved holds NaN or Inf (first in `leaf`); it was not saved."""

  def __init__(self, step: int, leaf: str):
    super().__init__(f'The state at step {step} holds NaN or Inf (first in {leaf}); not saved.')
    self.leaf = leaf


class UnusableCheckpoints(RuntimeError):
  """The workdir has checkpoints, and none of them can be restored."""


class CheckpointWriteError(OSError):
  """Writing a checkpoint failed; the ones before it are kept."""


class _Vanished(Exception):
  """A checkpoint was deleted while it was being read."""


VANISHED_RETRIES = 10     # a reader beside a running trainer starts over from the newest step


def on_disk(state: Any) -> dict[str, Any]:
  """The train state as a checkpoint holds it: its fields by name, without decoder_ema where
  the run keeps none, as in every checkpoint written before that field existed."""
  fields = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
  if fields.get('decoder_ema', ...) is None:
    del fields['decoder_ema']
  return fields


def first_non_finite_leaf(tree: Any) -> str | None:
  """The path of the first floating-point leaf of `tree` (host arrays) that holds a NaN or Inf,
  or None if all are finite."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.floating) and not np.all(np.isfinite(leaf)):
      return jax.tree_util.keystr(path)
  return None


MAX_JSON_ITEM_BYTES = 16 * 2**20       # a checkpoint's config and input position


def input_problem(position: Any, step: int) -> str | None:
  """Why a restored input position cannot be used (it is not what the trainer saves at `step`:
  the next batch and the report window in progress), or None."""
  if not isinstance(position, dict) or set(position) - {'next_batch', 'report_window'}:
    return 'its input position is not the next batch and a report window'
  if position.get('next_batch') != step or isinstance(position.get('next_batch'), bool):
    return f'its input position {str(position.get("next_batch"))[:40]} is not its step, {step}'
  window = position.get('report_window', {'steps': 0, 'sums': {}})
  bad_window = 'its report window is not a count of steps and finite sums by metric'
  if not isinstance(window, dict) or set(window) != {'steps', 'sums'}:
    return bad_window
  count, sums = window['steps'], window['sums']
  if (not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= step
      or not isinstance(sums, dict) or len(sums) > 1000
      or not all(isinstance(name, str) and isinstance(value, (int, float))
                 and not isinstance(value, bool) and np.isfinite(value)
                 for name, value in sums.items())):
    return bad_window
  return None


def state_problem(restored: Any, target: Any) -> str | None:
  """Why a restored state cannot be used: a different structure, shape or dtype than `target`'s,
  or a NaN or Inf; None if it is usable."""
  if jax.tree.structure(restored) != jax.tree.structure(target):
    return 'its state has another structure than this config\'s'
  for (path, got), expected in zip(jax.tree_util.tree_leaves_with_path(restored),
                                   jax.tree.leaves(target)):
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape or got.dtype != expected.dtype:
      return (f'{jax.tree_util.keystr(path)} is {got.dtype}{list(got.shape)}, expected '
              f'{expected.dtype}{list(expected.shape)}')
  bad = first_non_finite_leaf(restored)
  return None if bad is None else f'{bad} holds NaN or Inf'


def config_differences(saved: dict[str, Any], current: ml_collections.ConfigDict) -> list[str]:
  """'key: checkpoint X, config Y' for every key that differs and may not differ on resume."""
  saved_flat, current_flat = flatten_config(saved), flatten_config(current)
  missing = object()
  differences = []
  for key in sorted(set(saved_flat) | set(current_flat)):
    if key in RESUMABLE:
      continue
    old, new = saved_flat.get(key, ADDED_SINCE.get(key, missing)), current_flat.get(key, missing)
    if old != new:
      describe = lambda value: 'absent' if value is missing else repr(value)
      differences.append(f'{key}: checkpoint {describe(old)}, config {describe(new)}')
  return differences


class CheckpointReader:
  """A workdir's checkpoints, read: `directory` holds one folder per saved step. Nothing is
  created, moved or deleted, so it is safe beside a trainer that is saving and rotating them: a
  read that a rotation deletes under it starts over from the newest step (_retry_if_vanished)."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self.manager = self._retry_if_vanished(lambda: self._unless_deleted_while_listed(
        lambda: ocp.CheckpointManager(self.directory, item_names=('state', 'input', 'config'),
                                      options=self._options())))
    self._listed: set[int] = set()                       # the steps as _list_steps last saw them

  def _options(self) -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(create=False)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def saved_config(self, step: int) -> dict[str, Any]:
    """The config (as a dict) that wrote the checkpoint at `step`."""
    self._check_json_item(step, 'config')
    config = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))['config']
    if not isinstance(config, dict):
      raise ValueError('its config is not a JSON object')
    return config

  def _check_json_item(self, step: int, item: str) -> None:
    """A config or input position is JSON that orbax reads whole: at most 16 MiB of it."""
    path = os.path.join(self.directory, str(step), item, 'metadata')
    if os.path.exists(path) and os.path.getsize(path) > MAX_JSON_ITEM_BYTES:
      raise ValueError(f'its {item} has {os.path.getsize(path):,} bytes, more than the '
                       f'{MAX_JSON_ITEM_BYTES:,} a {item} takes')

  def _read(self, step: int, target_state: Any) -> tuple[Any, dict[str, Any]]:
    self._check_json_item(step, 'input')
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(on_disk(target_state)), input=ocp.args.JsonRestore()))
    return target_state.replace(**restored['state']), restored['input']

  def restore(self, target_state: Any, config: ml_collections.ConfigDict
              ) -> tuple[Any, dict[str, Any]] | None:
    """(state, input position) of the newest usable checkpoint, or None if there is none.

    target_state: a state of the current config; the restored one must match its structure,
    shapes and dtypes and be finite. Unusable checkpoints are skipped, newest first, each with
    one log line (_set_aside); if none is usable, UnusableCheckpoints says why for each.
    """
    target_state = jax.device_get(target_state)
    return self._retry_if_vanished(lambda: self._restore_newest_usable(target_state, config))

  def newest_config(self) -> tuple[int, dict[str, Any]] | None:
    """(step, config as a dict) of the newest checkpoint, or None if there is none."""
    def read():
      steps = self._list_steps()
      if not steps:
        return None
      try:
        return steps[-1], self.saved_config(steps[-1])
      except Exception:
        self._unless_vanished(steps[-1])
        raise
    return self._retry_if_vanished(read)

  def _retry_if_vanished(self, read: Callable[[], Any]) -> Any:
    """read(), started over when a running trainer deletes what it reads (see _unless_vanished).
    """
    for _ in range(VANISHED_RETRIES):
      try:
        return read()
      except _Vanished:
        pass
    raise UnusableCheckpoints(
        f'The checkpoints in {self.directory} were deleted {VANISHED_RETRIES} times while being '
        f'read: a trainer saves and rotates them faster than they can be read. Try again, or '
        f'train with a larger checkpoint_every_steps or keep_checkpoints.')

  @staticmethod
  def _unless_deleted_while_listed(list_steps: Callable[[], Any]) -> Any:
    """list_steps(), an orbax call that lists the steps and then reads each one's folder; a
    step deleted in between (a trainer's rotation, beside a reader) is _Vanished."""
    try:
      return list_steps()
    except FileNotFoundError as error:
      raise _Vanished(error.filename) from error
    except NotADirectoryError as error:
      # orbax checks exists() and then is_dir(): a folder deleted in between is "not a
      # directory" (its message ends with the path); a file that is really there is not ours.
      path = str(error).rpartition(': ')[2]
      if os.path.lexists(path):
        raise
      raise _Vanished(path) from error

  def _reload(self) -> None:
    self._unless_deleted_while_listed(self.manager.reload)

  def _list_steps(self) -> list[int]:
    """The saved steps, ascending, as on disk now; remembered for _unless_vanished."""
    self._reload()
    self._listed = set(self.manager.all_steps())
    return sorted(self._listed)

  def _restore_newest_usable(self, target_state: Any, config: ml_collections.ConfigDict
                             ) -> tuple[Any, dict[str, Any]] | None:
    problems = []
    for step in reversed(self._list_steps()):
      try:
        saved_config = self.saved_config(step)
      except Exception as error:     # orbax and tensorstore raise many kinds for a damaged file
        self._unless_vanished(step)
        problems.append((step, f'its config cannot be read ({console.one_line(error)})'))
        continue
      differences = config_differences(saved_config, config)
      if differences:
        listing = '\n  '.join(differences)
        raise IncompatibleCheckpoint(
            f'The checkpoint at step {step} in {self.directory} was written with another config:'
            f'\n  {listing}\nRun with the same config to resume it, or give a new --workdir to '
            f'start a new run.')
      try:
        state, input_state = self._read(step, target_state)
      except Exception as error:
        self._unless_vanished(step)
        problems.append((step, f'it cannot be read ({console.one_line(error)})'))
        continue
      problem = state_problem(state, target_state) or input_problem(input_state, step)
      if problem:
        problems.append((step, problem))
        continue
      self._set_aside(problems)
      return state, input_state
    if problems:
      listing = '\n  '.join(f'step {step}: {problem}' for step, problem in problems)
      raise UnusableCheckpoints(
          f'No checkpoint in {self.directory} can be restored:\n  {listing}\nMove that folder '
          f'aside to start the run over, or give a new --workdir.')
    return None

  def _unless_vanished(self, step: int) -> None:
    """Raise _Vanished if a read of `step` failed because a running trainer is deleting it (its
    rotation, beside a reader): the step's folder is gone, or a step newer than it has been
    saved since the steps were listed (rotation deletes only steps older than a verified one,
    and a folder is gone only once its files are). Otherwise the checkpoint is damaged."""
    if not os.path.isdir(os.path.join(self.directory, str(step))):
      raise _Vanished(step)
    self._reload()
    if any(saved > step and saved not in self._listed for saved in self.manager.all_steps()):
      raise _Vanished(step)

  def _set_aside(self, problems: list[tuple[int, str]]) -> None:
    """Say why each newer checkpoint was unusable; a reader leaves them where they are."""
    for step, problem in problems:
      logging.warning('The checkpoint at step %d is unusable: %s. Using an older one.', step,
                      problem)

  def __enter__(self) -> CheckpointReader:
    return self

  def __exit__(self, *exception: Any) -> None:
    self.close()

  def close(self) -> None:
    self.manager.close()


class Checkpointer(CheckpointReader):
  """The trainer's checkpoints, WORKDIR/NAME: restore (moving unusable ones aside), save, verify,
  rotate; none of it through a link planted in the tree."""

  def __init__(self, workdir: folders.Folder, keep: int | None = None,
               name: str = 'checkpoints'):
    """keep: checkpoints kept when saving (None: all)."""
    self.workdir, self.name = workdir, name
    workdir.make_folder(name)
    self.check_tree()
    super().__init__(workdir.path(name))
    self.keep = keep
    self._unverified: tuple[int, Any] | None = None     # (step, host state) saved, not read back
    self.last_good: int | None = None     # the newest step restored or read back whole

  def _options(self) -> ocp.CheckpointManagerOptions:
    # Orbax keeps every step; `_rotate` deletes old ones once a newer one is verified.
    return ocp.CheckpointManagerOptions(create=True)

  def check_tree(self) -> None:
    """files.UnsafeFile unless every entry of the checkpoint tree is a plain folder or file."""
    self.workdir.check_plain(self.name)

  def restore(self, target_state: Any, config: ml_collections.ConfigDict
              ) -> tuple[Any, dict[str, Any]] | None:
    self.check_tree()
    restored = super().restore(target_state, config)
    if restored is not None:
      self.last_good = int(restored[0].step)
    return restored

  def _set_aside(self, problems: list[tuple[int, str]]) -> None:
    """Move the unusable newer checkpoints out of the way (a resumed run saves those steps
    again), saying why for each."""
    if not problems:
      return
    aside = self.name + UNUSABLE_SUFFIX
    for step, problem in problems:
      if jax.process_index() == 0:
        self.workdir.move(f'{self.name}/{step}', f'{aside}/{step}')
      logging.warning('The checkpoint at step %d is unusable: %s. Moved to %s; using an older '
                      'one.', step, problem, self.workdir.path(f'{aside}/{step}'))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('unusable checkpoints moved')
    self.manager.reload()

  def save(self, step: int, state: Any, input_state: dict[str, Any],
           config: ml_collections.ConfigDict) -> None:
    """Save on every process (orbax coordinates the writes); returns before the write ends.

    Raises NonFiniteState, saving nothing, if the state holds a NaN or Inf. The previous save
    is read back and verified first, and only then are checkpoints beyond `keep` deleted.

    The state is saved as host numpy arrays: it is replicated, and pmap's outputs are arrays
    local to each process, which orbax cannot write as one array in a multi-process run; numpy
    arrays are written once, by the primary process.
    """
    host_state = jax.device_get(state)
    bad = first_non_finite_leaf(host_state)
    if bad is not None:
      raise NonFiniteState(step, bad)
    self.wait()
    self.check_tree()
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(on_disk(host_state)), input=ocp.args.JsonSave(input_state),
        config=ocp.args.JsonSave(json.loads(json.dumps(config.to_dict())))))
    self._unverified = (step, host_state)

  def wait(self) -> None:
    """Block until the last save is complete on disk, read it back, and rotate.

    Raises CheckpointWriteError if the save failed (a full disk, say); older checkpoints stay.
    """
    pending = self._unverified
    self._unverified = None
    try:
      self.manager.wait_until_finished()
    except Exception as error:       # orbax re-raises the background write's error here
      step = f'at step {pending[0]} ' if pending else ''
      kept = sorted(set(self.manager.all_steps()) - {pending[0] if pending else None})
      raise CheckpointWriteError(
          f'Saving the checkpoint {step}in {self.directory} failed ({console.one_line(error)}). '
          f'Training stopped; the checkpoints before it are kept (steps '
          f'{", ".join(map(str, kept)) or "none"}): {folders.write_failure_advice(error)}, '
          f'then rerun to resume.') from None
    if pending is None:
      return
    step, host_state = pending
    try:
      problem = state_problem(self._read(step, host_state)[0], host_state)
    except Exception as error:
      problem = f'it cannot be read back ({console.one_line(error)})'
    if problem:
      raise CheckpointWriteError(
          f'The checkpoint just saved at step {step} in {self.directory} is unusable: {problem}. '
          f'Training stopped; older checkpoints were kept. Check the disk, then rerun to resume '
          f'from the last good one.')
    self.last_good = step
    self._rotate()

  def _rotate(self) -> None:
    """Delete all but the newest `keep` checkpoints (the newest is verified)."""
    if self.keep is None:
      return
    self.check_tree()
    for step in sorted(self.manager.all_steps())[:-self.keep]:
      self.manager.delete(step)

  def close(self) -> None:
    """Wait for the last save (verified, then rotation) and stop orbax's background threads."""
    with console.closing_after(('orbax\'s checkpoint manager', self.manager.close)):
      self.wait()
