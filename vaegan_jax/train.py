"""train_and_evaluate: check, build, restore, loop, evaluate, save.

Rerunning the same command continues a run: the latest checkpoint in the workdir holds the
state (with its RNG) and the training input's position, so a run killed at any moment and
restarted ends with exactly the parameters of one never interrupted.
"""
from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from vaegan_jax import (checkpoints, input_pipeline, metric_writers, models, prepare, sources,
                        state, steps)


class NonFiniteLoss(FloatingPointError):
  """A loss became NaN or Inf; training stopped without saving."""


# ---------------------------------------------------------------- checks before compiling
def check_config(config: ml_collections.ConfigDict) -> None:
  """The run's settings that would otherwise fail late, with the valid choices in the message.
  (build_networks and build_optimizers check the model, loss and optimizer sections.)"""
  if config.data.flip not in input_pipeline.FLIP_MODES:
    raise ValueError(f'data.flip={config.data.flip!r}: choose from {input_pipeline.FLIP_MODES}.')
  for name in ('num_train_steps', 'global_batch_size', 'log_every_steps', 'image_every_steps',
               'eval_every_steps', 'checkpoint_every_steps', 'keep_checkpoints', 'grid_size',
               'data.reader_threads'):
    section, _, key = name.rpartition('.')
    value = (config[section] if section else config)[key]
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'{name}={value!r}: must be a positive integer.')
  if config.eval_batches < 0:
    raise ValueError(f'eval_batches={config.eval_batches}: 0 (all) or a positive count.')
  if config.global_batch_size % jax.device_count():
    raise ValueError(f'global_batch_size={config.global_batch_size} does not split over '
                     f'{jax.device_count()} devices; make it a multiple of {jax.device_count()}.')


def check_workdir(workdir: str) -> None:
  """The workdir exists (or is made) and takes a file: a clear error now, not after compiling."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write_test_{jax.process_index()}')
    with open(probe, 'w') as file:
      file.write('ok')
    os.remove(probe)
  except OSError as error:
    raise OSError(f'Cannot write to the workdir {workdir}: {error}. Give a --workdir this user '
                  f'can write.') from error


# ---------------------------------------------------------------- input
def open_data(config: ml_collections.ConfigDict
              ) -> tuple[input_pipeline.PreparedSplit, input_pipeline.PreparedSplit]:
  """(train split, eval split); process 0 prepares the dataset first if the config says how."""
  data, model = config.data, config.model
  if jax.process_index() == 0:
    prepare.ensure_prepared(data, model.resolution, model.image_channels)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('dataset prepared')
  data_dir = os.path.expanduser(data.data_dir)
  open_split = lambda split: input_pipeline.open_prepared(
      data_dir, data.name, model.resolution, model.image_channels, split)
  return open_split(data.train_split), open_split(data.eval_split)


def fixed_grid_inputs(config: ml_collections.ConfigDict, eval_split: input_pipeline.PreparedSplit,
                      devices: int) -> dict[str, jax.Array]:
  """The same test images, their attributes and prior latents at every grid: [D, n / D, ...]
  with n the smallest multiple of the device count that holds grid_size^2."""
  count = devices * math.ceil(config.grid_size ** 2 / devices)
  if len(eval_split) < count:
    raise sources.DataError(f'The eval split has {len(eval_split)} images; the grids need '
                            f'{count}. Lower grid_size.')
  test = eval_split.read(np.arange(count))
  latents = jax.random.normal(jax.random.PRNGKey(config.seed + 1),
                              (count, config.model.latent_dim))
  per_device = lambda array: np.asarray(array).reshape(devices, -1, *array.shape[1:])
  return {'image': per_device(test['image']), 'attributes': per_device(test['attributes']),
          'latents': per_device(latents)}


# ---------------------------------------------------------------- metrics
def first_non_finite(history: list[tuple[int, dict[str, np.ndarray]]]) -> tuple[int, str] | None:
  """(step, metric name) of the first NaN or Inf in the steps' metrics, or None."""
  for step, metrics in history:
    for name, value in metrics.items():
      if not np.all(np.isfinite(value)):
        return step, name
  return None


def format_line(step: int, total: int, averages: dict[str, float], images_per_s: float,
                eta_s: float) -> str:
  """One console line: progress, the main losses and D outputs, speed and time left."""
  shown = [name for name in ('prior', 'llike', 'decoder_gan', 'discriminator', 'd_real',
                             'd_reconstruction', 'd_prior', 'skipped_discriminator',
                             'skipped_decoder') if name in averages]
  values = ' '.join(f'{name}={averages[name]:.4g}' for name in shown)
  eta = time.strftime('%H:%M:%S', time.gmtime(max(eta_s, 0)))
  return f'step {step}/{total} | {values} | {images_per_s:.1f} img/s | ETA {eta}'


# ---------------------------------------------------------------- the run
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> state.TrainState:
  """Train `config` in `workdir`, resuming from its latest checkpoint; returns the final state."""
  # Checks first: nothing below compiles before the config, workdir and data are known good.
  workdir = os.path.expanduser(workdir)
  networks = models.build_networks(config, steps.AXIS_NAME)      # checks model and loss
  optimizers = state.build_optimizers(config, networks)           # checks the optimizers
  check_config(config)
  check_workdir(workdir)
  train_split, eval_split = open_data(config)
  # A conditional model's y: these attribute columns, made by to_model_input as 'condition'.
  columns = input_pipeline.condition_columns(train_split.attribute_names,
                                             config.model.condition_on)
  devices = jax.local_devices()
  is_chief = jax.process_index() == 0

  # Input: this process's part of every global batch, read ahead, on its devices.
  load = input_pipeline.training_batches(
      train_split, seed=config.seed, global_batch_size=config.global_batch_size,
      local_devices=len(devices), flip=config.data.flip, process_index=jax.process_index(),
      process_count=jax.process_count())
  batches = input_pipeline.TrainingIterator(load, devices, threads=config.data.reader_threads,
                                            condition_columns=columns)

  # The initial state (the networks and optimisers were built, and so checked, first).
  train_state = state.init_train_state(config, networks, optimizers)

  # Restore, or start at step 0.
  checkpointer = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                          config.keep_checkpoints)
  restored = checkpointer.restore(train_state, config)
  if restored is not None:
    train_state, input_state = restored
    batches.set_state(input_state)
    logging.info('Resumed from step %d in %s.', int(train_state.step), checkpointer.directory)
  start_step = int(train_state.step)
  if batches.get_state()['next_batch'] != start_step:
    raise checkpoints.IncompatibleCheckpoint(
        f'The checkpoint at step {start_step} holds input position {batches.get_state()}; '
        f'they must agree. The checkpoint was not written by this program.')

  # The update step, and what the reports need.
  train_step = steps.make_pmapped_train_step(config, networks, optimizers)
  eval_step = steps.make_pmapped_eval_step(config, networks)
  grid_inputs = fixed_grid_inputs(config, eval_split, len(devices))
  grid_model_input = input_pipeline.to_model_input(
      {'image': grid_inputs['image'], 'attributes': grid_inputs['attributes']}, columns)
  grid_images = grid_model_input['image']
  writer = metric_writers.MetricWriter(workdir, enabled=is_chief)

  def write_grids(step: int) -> None:
    outputs, _ = eval_step(train_state, grid_images, grid_inputs['latents'],
                           grid_model_input.get('condition'))
    outputs['test_images'] = grid_images
    count = config.grid_size ** 2
    writer.write_images(step, {name: metric_writers.image_grid(
        np.asarray(images).reshape(-1, *images.shape[2:])[:count], config.grid_size)
        for name, images in outputs.items()})

  def evaluate(step: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    count = 0
    for batch in input_pipeline.eval_batches(
        eval_split, global_batch_size=config.global_batch_size, local_devices=len(devices),
        process_index=jax.process_index(), process_count=jax.process_count(),
        max_batches=config.eval_batches or None):
      latents = jax.random.normal(jax.random.PRNGKey(config.seed + 2 + count),
                                  batch['image'].shape[:2] + (config.model.latent_dim,))
      model_input = input_pipeline.to_model_input(batch, columns)
      _, averages = eval_step(train_state, model_input['image'], latents,
                              model_input.get('condition'))
      for name, value in jax.device_get(averages).items():
        totals[name] = totals.get(name, 0.0) + float(value)
      count += 1
    averages = {name: value / max(count, 1) for name, value in totals.items()}
    writer.write_scalars(step, 'eval', averages)
    logging.info('eval at step %d: %s', step,
                 ' '.join(f'{name}={value:.4g}' for name, value in sorted(averages.items())))
    return averages

  # Preemption: SIGTERM asks for a checkpoint and a clean exit at the next step.
  preemption = {'requested': False}
  previous_handler = signal.signal(
      signal.SIGTERM, lambda signum, frame: preemption.update(requested=True))

  def preempted(step: int) -> bool:
    if jax.process_count() > 1:      # every process must stop at the same step
      return multihost_utils.reached_preemption_sync_point(step) or preemption['requested']
    return preemption['requested']

  # The loop.
  total = config.num_train_steps
  history: list[tuple[int, Any]] = []
  interval_start, interval_steps = time.perf_counter(), 0
  step = start_step
  try:
    while step < total:
      batch = next(batches)
      train_state, metrics = train_step(train_state, batch['image'], batch.get('condition'))
      step += 1
      interval_steps += 1
      history.append((step, metrics))
      stop = preempted(step)
      due = lambda every: step % every == 0 or step == total or stop
      if not any(due(every) for every in (
          config.log_every_steps, config.image_every_steps, config.eval_every_steps,
          config.checkpoint_every_steps)):
        continue
      host_history = jax.device_get(history)
      bad = first_non_finite(host_history)
      if bad is not None:
        raise NonFiniteLoss(
            f'{bad[1]} is not finite at step {bad[0]}. Training stopped; nothing after step '
            f'{checkpointer.latest_step() or 0} (the last checkpoint, left intact) was saved. '
            f'Lower the learning rates or use loss.gan_form="logit" and resume.')
      if due(config.log_every_steps):
        seconds = time.perf_counter() - interval_start
        averages = {name: float(np.mean([metrics[name] for _, metrics in host_history]))
                    for name in host_history[-1][1]}
        images_per_s = interval_steps * config.global_batch_size / seconds
        averages['images_per_s'] = images_per_s
        writer.write_scalars(step, 'train', averages)
        if is_chief:
          eta = (total - step) * seconds / interval_steps
          logging.info(format_line(step, total, averages, images_per_s, eta))
        history, interval_steps = [], 0
        interval_start = time.perf_counter()
      if due(config.image_every_steps):
        write_grids(step)
      if due(config.eval_every_steps):
        evaluate(step)
      if due(config.checkpoint_every_steps):
        checkpointer.save(step, train_state, batches.get_state(), config)
      if stop:
        logging.warning('Preempted: saved step %d; rerun the same command to continue.', step)
        break
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return train_state
