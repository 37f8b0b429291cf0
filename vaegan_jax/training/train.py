"""train_and_evaluate: check, build, restore, loop, evaluate, save.

Rerunning the same command continues a run: the latest checkpoint in the workdir holds the
state (with its RNG) and the training input's position, so a run killed at any moment and
restarted ends with exactly the parameters of one never interrupted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import time
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from vaegan_jax import console, folders
from vaegan_jax.configs import schema
from vaegan_jax.data import grids, input_pipeline, prepare
from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.metrics import extractors, inception, quality
from vaegan_jax.model import priors
from vaegan_jax.sharding import DEVICE_AXIS, device_sharding
from vaegan_jax.training import checkpoints, metric_writers, state, steps, workdir_lock

# The fixed prior latents drawn for the sample grids come from seed + GRID_SEED_OFFSET; those of
# evaluation batch b from seed + EVAL_SEED_OFFSET + b. Offsets keep them apart from the init
# (seed) and from each other, and every evaluation draws the same ones.
GRID_SEED_OFFSET = 1
EVAL_SEED_OFFSET = 2
QUALITY_SEED_OFFSET = 1_000_000      # batch b of a quality measurement: seed + this + b
GRID_CAPTIONS = {
    'samples': 'samples: the same z ~ N(0, I) at every step',
    'reconstructions': 'reconstructions of the test images (encoder mean)',
    'test_images': 'test images',
}


class NonFiniteLoss(FloatingPointError):
  """A loss, an evaluation metric or the state became NaN or Inf; training stopped without
  saving it."""


# ---------------------------------------------------------------- small pieces
def is_due(step: int, every: int, total: int) -> bool:
  """Whether a periodic action runs after `step`: every `every` steps, and after the last one
  (as big_vision's `u.itstime`)."""
  return step % every == 0 or step == total


def dispatch_plan(step: int, steps_per_dispatch: int, intervals: Iterable[int], total: int,
                  r1_every: int = 0) -> tuple[int, bool]:
  """(steps, with R1?) of the next dispatch after `step`: steps_per_dispatch, cut short at the
  next step where a periodic action falls due (or the last step), so that each happens at its
  step. R1's lazy steps (every r1_every; 0: no R1) run alone, each in the executable that adds
  R1 (steps.r1_gradients). A run therefore compiles only a few lengths, and the same ones
  wherever it resumes."""
  if r1_every and step % r1_every == 0:
    return 1, True
  cuts = list(intervals) + ([r1_every] if r1_every else [])
  next_due = min([total] + [(step // every + 1) * every for every in cuts])
  return max(1, min(steps_per_dispatch, next_due - step)), False


def next_batches(batches: Iterable[dict[str, jax.Array]], count: int) -> dict[str, jax.Array]:
  """The next batch ([D, B, ...] each) for one step, or the next `count` stacked [D, count, B,
  ...] for a dispatch of several (steps.make_pmapped_train_step)."""
  if count == 1:
    return next(batches)
  taken = [next(batches) for _ in range(count)]
  return jax.tree.map(lambda *parts: jnp.stack(parts, axis=1), *taken)


def per_step(history: list[tuple[int, int, dict[str, np.ndarray]]]
             ) -> list[tuple[int, dict[str, np.ndarray]]]:
  """(step, metrics) for every step of the dispatches in `history` (host arrays): a dispatch of
  several steps holds each metric stacked [steps]."""
  result = []
  for last, count, metrics in history:
    if count == 1:
      result.append((last, metrics))
    else:
      result += [(last - count + 1 + index, {name: value[index] for name, value in
                                             metrics.items()}) for index in range(count)]
  return result


def check_workdir(workdir: str) -> folders.Folder:
  """The workdir, made if needed and known to take a file: a clear error now, not after
  compiling. Everything the run writes goes through the Folder returned."""
  return folders.Folder(workdir, 'the workdir', '--workdir').make()


def open_data(config: ml_collections.ConfigDict
              ) -> tuple[input_pipeline.PreparedSplit, input_pipeline.PreparedSplit]:
  """(train split, eval split); process 0 prepares the dataset first if the config says how."""
  if jax.process_index() == 0:
    prepare.ensure_prepared(config.data, config.model.resolution, config.model.image_channels)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('dataset prepared')
  return (input_pipeline.open_training_split(config),
          input_pipeline.open_configured(config, config.data.eval_split))


def first_non_finite(history: list[tuple[int, dict[str, np.ndarray]]]) -> tuple[int, str] | None:
  """(step, metric name) of the first NaN or Inf in the steps' metrics, or None."""
  for step, metrics in history:
    for name, value in metrics.items():
      if not np.all(np.isfinite(value)):
        return step, name
  return None


def fold_window(window: dict[str, Any], host_history: list[tuple[int, dict[str, np.ndarray]]]
                ) -> dict[str, Any]:
  """The report window {'steps': n, 'sums': {name: sum}} with the steps of `host_history` added
  in order. The sums are float64 and added one step at a time, so a window saved with a
  checkpoint and continued after a resume gives the same averages as one never interrupted."""
  sums = dict(window['sums'])
  for _, metrics in host_history:
    for name, value in metrics.items():
      sums[name] = sums.get(name, 0.0) + float(np.mean(value))
  return {'steps': window['steps'] + len(host_history), 'sums': sums}


EMPTY_WINDOW = {'steps': 0, 'sums': {}}


def stop_message(what: str, step: int, last_saved: int | None,
                 config: ml_collections.ConfigDict) -> str:
  """Why training stopped at `step`, what was really kept, and what to change."""
  kept = (f'the last checkpoint, step {last_saved}, is kept and a rerun resumes from it'
          if last_saved is not None else 'no checkpoint was saved, so a rerun starts over')
  advice = 'Lower the learning rates (a resumed run may change them)'
  if config.loss.gan_form != 'logit':
    advice += ', or use loss.gan_form="logit"'
  return f'{what} at step {step}. Training stopped without saving it; {kept}. {advice}.'


def check_finite(values: dict[str, float], kind: str, step: int,
                 checkpointer: checkpoints.Checkpointer, config: ml_collections.ConfigDict
                 ) -> dict[str, float]:
  """`values`, if all are finite; else NonFiniteLoss before anything is reported or saved."""
  bad = sorted(name for name, value in values.items() if not np.isfinite(value))
  if bad:
    raise NonFiniteLoss(stop_message(f'{kind} {", ".join(bad)} not finite', step,
                                     checkpointer.latest_step(), config))
  return values


def report(writer: metric_writers.MetricWriter, step: int, kind: str,
           values: dict[str, float]) -> None:
  """An evaluation's numbers to metrics.jsonl and TensorBoard (as `kind`) and one console line
  (KID's standard deviations only in the files)."""
  writer.write_scalars(step, kind, values)
  logging.info('%s at step %d: %s', kind, step, ' '.join(
      f'{name}={value:.4g}' for name, value in sorted(values.items())
      if not name.startswith('kid_std')))


def report_training(writer: metric_writers.MetricWriter, step: int, total: int,
                    window: dict[str, Any], steps_done: int, seconds: float,
                    global_batch_size: int) -> None:
  """The report window's average train metrics and the speed over the last `steps_done` steps,
  to the files and (process 0) one console line."""
  averages = {name: value_sum / window['steps'] for name, value_sum in window['sums'].items()}
  averages['images_per_s'] = steps_done * global_batch_size / seconds
  writer.write_scalars(step, 'train', averages)
  if jax.process_index() == 0:
    eta = (total - step) * seconds / steps_done
    logging.info(format_line(step, total, averages, averages['images_per_s'], eta))


def save_checkpoint(checkpointer: checkpoints.Checkpointer, step: int,
                    train_state: state.TrainState, input_state: dict[str, Any],
                    config: ml_collections.ConfigDict) -> None:
  """checkpointer.save, or NonFiniteLoss (nothing saved) where the state is not finite."""
  try:
    checkpointer.save(step, train_state, input_state, config)
  except checkpoints.NonFiniteState as error:
    raise NonFiniteLoss(stop_message(f'The state holds NaN or Inf (in {error.leaf})', step,
                                     checkpointer.latest_step(), config)) from None


def run_summary(workdir: folders.Folder, start_step: int, step: int, total: int,
                last_checkpoint: int | None, measures_quality: bool,
                sampler: str = 'standard') -> list[str]:
  """Where a run's results are, for the lines that end it: its state, the newest grids, the
  metrics, the last checkpoint and the last sample-quality measurement."""
  if start_step >= total:
    state_line = (f'Already finished: step {step} of {total}; nothing to train. Raise '
                  f'--config.num_train_steps to train further.')
  elif step < total:
    state_line = f'Stopped at step {step} of {total}; rerun the same command to continue.'
  else:
    state_line = f'Finished: step {step} of {total}.'
  lines = [state_line, f'  workdir:    {workdir.path()}']
  grids = sorted(name for name in (workdir.list('images') if workdir.exists('images') else [])
                 if name.endswith('.png'))
  if grids:
    newest = grids[-1].rpartition('_')[2]
    lines.append(f'  grids:      {workdir.path("images")}/*_{newest} (test images, '
                 f'reconstructions, samples)')
  lines.append(f'  metrics:    {workdir.path(metric_writers.JSONL_NAME)}; TensorBoard: '
               f'{workdir.path("tensorboard")}')
  lines.append('  checkpoint: ' + (f'step {last_checkpoint}, {workdir.path("checkpoints")}/'
                                   f'{last_checkpoint}' if last_checkpoint is not None
                                   else 'none'))
  lines.append('  quality:    ' + (last_quality(workdir, sampler) if measures_quality else
                                  'not measured (quality.extractor=none)'))
  return lines


def last_quality(workdir: folders.Folder, sampler: str = 'standard') -> str:
  """The last sample-quality measurement in metrics.jsonl, in a few words; the sampler's
  samples first."""
  try:
    records = metric_writers.read_records(workdir.path(metric_writers.JSONL_NAME))
  except (OSError, ValueError):
    records = []
  measured = [record for record in records if record['kind'] == 'quality']
  if not measured:
    return 'not measured yet (quality.every_steps)'
  last = measured[-1]
  fids = sorted((name, value) for name, value in last.items() if name.startswith('fid_'))
  if sampler != 'standard':          # the sampler's samples lead, named as drawn
    fids.sort(key=lambda item: not item[0].endswith(f'_samples_{priors.label(sampler)}'))
  shown = lambda name: (name[len('fid_'):].replace('_', ' ')
                        + (f' (the sampler, {sampler})' if sampler != 'standard' and
                           name.endswith(f'_samples_{priors.label(sampler)}') else '')
                        + (' (N(0, I))' if name.endswith('_samples') else ''))
  return f'FID at step {last["step"]}: ' + ', '.join(f'{shown(name)} {value:.4g}'
                                                     for name, value in fids)


def last_good_line(checkpointer: checkpoints.Checkpointer) -> str:
  """Which checkpoint a rerun resumes from, for the last line of a failed run."""
  if checkpointer.last_good is None:
    return 'No checkpoint was kept, so a rerun starts over.'
  return (f'The last good checkpoint is step {checkpointer.last_good} in '
          f'{checkpointer.directory}; a rerun resumes from it.')


def format_line(step: int, total: int, averages: dict[str, float], images_per_s: float,
                eta_s: float) -> str:
  """One console line: progress, every loss term the model kind has, D's outputs, the gating's
  skips, speed and time left."""
  shown = [name for name in steps.LOSS_TERMS + (
      'd_real', 'd_reconstruction', 'd_prior', 'skipped_discriminator', 'skipped_decoder')
           if name in averages]
  values = ' '.join(f'{name}={averages[name]:.4g}' for name in shown)
  eta = time.strftime('%H:%M:%S', time.gmtime(max(eta_s, 0)))
  return f'step {step}/{total} | {values} | {images_per_s:.1f} img/s | ETA {eta}'


# ---------------------------------------------------------------- grids and evaluation
def grid_inputs(config: ml_collections.ConfigDict, eval_split: input_pipeline.PreparedSplit,
                devices: list[jax.Device], condition_columns: tuple[int, ...]
                ) -> dict[str, jax.Array]:
  """The same test images (as model input, with a conditional model's y) and prior latents at
  every grid: [D, n / D, ...], n the smallest multiple of the device count that holds
  grid_size^2."""
  count = len(devices) * math.ceil(config.grid_size ** 2 / len(devices))
  if len(eval_split) < count:
    raise DataError(f'The eval split has {len(eval_split)} images; the grids need {count}. '
                    f'Lower grid_size.')
  # The count per device is given, not -1: a dataset without attributes has [n, 0] of them.
  per_device = lambda array: np.asarray(array).reshape(len(devices), count // len(devices),
                                                       *array.shape[1:])
  test = {name: per_device(value) for name, value in eval_split.read(np.arange(count)).items()}
  inputs = input_pipeline.to_model_input(
      input_pipeline.to_devices(test, device_sharding(devices)), condition_columns)
  latents = jax.random.normal(jax.random.PRNGKey(config.seed + GRID_SEED_OFFSET),
                              (count, config.model.latent_dim))
  return {**inputs, 'latents': per_device(latents)}


def write_grids(eval_step: Callable, train_state: state.TrainState, inputs: dict[str, jax.Array],
                writer: metric_writers.MetricWriter, step: int, grid_size: int,
                sampler: Sampler | None = None, decode_step: Callable | None = None,
                seed: int = 0) -> None:
  """Samples from the fixed latents, reconstructions and the test images, as captioned PNGs;
  with a fitted sampler [ours], also the same latents moved by it (samples_LABEL), or N(0, I)'s,
  labelled so, until its first fit."""
  outputs, _ = eval_step(train_state, inputs['image'], inputs['latents'], inputs.get('condition'))
  outputs['test_images'] = inputs['image']
  captions = dict(GRID_CAPTIONS)
  if sampler is not None:
    name = f'samples_{priors.label(sampler.spec)}'
    if sampler.prior is None:
      outputs[name] = outputs['samples']
      captions[name] = f'samples: {sampler.spec} not fitted yet, so z ~ N(0, I)'
    else:
      latents = prior_latents(sampler.prior, inputs['latents'],
                              jax.random.PRNGKey(seed + GRID_SEED_OFFSET))
      outputs[name] = decode_step(train_state, latents, inputs.get('condition'))
      captions[name] = f'samples: {sampler.spec} fitted to the codes at step {sampler.fit_step}'
  writer.write_images(step, {
      name: grids.captioned_grid(
          np.asarray(images).reshape(-1, *images.shape[2:])[:grid_size ** 2], grid_size,
          f'{captions[name]} | step {step}')
      for name, images in outputs.items()})


def evaluate(eval_step: Callable, train_state: state.TrainState,
             batches: Iterable[dict[str, jax.Array]], seed: int, latent_dim: int
             ) -> dict[str, float]:
  """The eval step's averages over `batches` (model input), each batch with its own fixed prior
  latents."""
  totals: dict[str, float] = {}
  count = 0
  for index, batch in enumerate(batches):
    latents = jax.random.normal(jax.random.PRNGKey(seed + EVAL_SEED_OFFSET + index),
                                batch['image'].shape[:2] + (latent_dim,))
    _, averages = eval_step(train_state, batch['image'], latents, batch.get('condition'))
    for name, value in jax.device_get(averages).items():
      totals[name] = totals.get(name, 0.0) + float(value)
    count = index + 1
  return {name: value / max(count, 1) for name, value in totals.items()}


def quality_probe(config: ml_collections.ConfigDict
                  ) -> tuple[extractors.Extractor, extractors.Reference] | None:
  """The feature space and the eval split's reference statistics of the in-loop sample quality
  (extractors.quality_space); None, said in one log line, where the config turns it off or the
  dataset has no extractor."""
  if config.quality.extractor == 'none':
    return None
  settings = config.quality
  probe = extractors.quality_space(config, settings.extractor, settings.num_samples,
                                   inception_weights=settings.inception_weights,
                                   inception_sha256=settings.inception_sha256,
                                   extractor_steps=settings.extractor_steps)
  if probe is None:
    logging.info('No sample-quality metrics: %s has no attribute that varies to train the '
                 'domain feature extractor on.', config.data.name)
  return probe


def prior_latents(prior: priors.Prior, latents: jax.Array, key: jax.Array) -> np.ndarray:
  """The prior's z from the draws e = `latents` [D, n, L] of N(0, I), with its uniform and second
  normal draws taken from `key`: the same e as p(z)'s samples, transformed (model/priors.py)."""
  latent_dim = latents.shape[-1]
  uniform = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1), latents.shape[:2]))
  noise = np.asarray(jax.random.normal(jax.random.fold_in(key, 2), latents.shape))
  moved = prior.transform(np.asarray(latents).reshape(-1, latent_dim), uniform.ravel(),
                          noise.reshape(-1, latent_dim))
  return moved.reshape(latents.shape)


@dataclasses.dataclass(frozen=True)
class Sampler:
  """quality.sampler [ours]: the prior the grids draw samples from, and its newest fit (None
  before the first; fit_step: the step whose encoder made its codes)."""
  spec: str
  prior: priors.Prior | None = None
  fit_step: int | None = None


def fitted_specs(quality: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The priors the loop fits at every quality step: quality.priors, and the sampler."""
  specs = tuple(quality.priors)
  if quality.sampler != 'standard' and quality.sampler not in specs:
    specs += (quality.sampler,)
  return specs


def resumed_sampler(config: ml_collections.ConfigDict, workdir: folders.Folder,
                    step: int) -> Sampler | None:
  """The sampler as the run left it at `step`: its newest fit saved at or before that step, so
  that a resumed run draws what an uninterrupted one does; None for N(0, I)."""
  spec = config.quality.sampler
  if spec == 'standard':
    return None
  newest = priors.newest_fit(workdir, spec, config.model.latent_dim, at_most=step)
  return Sampler(spec) if newest is None else Sampler(spec, newest[1], newest[0])


def fit_priors(encode_step: Callable, train_state: state.TrainState,
               batches: Iterable[dict[str, jax.Array]], specs: Iterable[str], count: int,
               seed: int) -> dict[str, priors.Prior]:
  """{spec: the prior fitted to the encoder's means of the first `count` training images} (from
  `batches`, model input, in order): the same images at every measurement [ours]."""
  start, codes, seen = time.perf_counter(), [], 0
  for batch in batches:
    mu = encode_step(train_state, batch['image'], batch.get('condition'))
    if jax.process_count() > 1:
      mu = multihost_utils.process_allgather(mu)
    codes.append(np.asarray(mu).reshape(-1, mu.shape[-1]))
    seen += len(codes[-1])
    if seen >= count:
      break
  codes = np.concatenate(codes)[:count]
  fitted = {spec: priors.fit(spec, codes, seed) for spec in specs}
  logging.info('Fitted the priors %s to %d codes in %.1f s (encoding included).',
               ', '.join(specs), len(codes), time.perf_counter() - start)
  return fitted


def save_priors(fitted: dict[str, priors.Prior], workdir: folders.Folder, step: int) -> None:
  """Each fit into the workdir, keyed by the step whose encoder made its codes (process 0)."""
  if jax.process_index() == 0:
    with metric_writers.writing('the prior fits'):
      for spec, prior in fitted.items():
        priors.save(prior, workdir, priors.fit_name(spec, step))


def measure_quality(eval_step: Callable, train_state: state.TrainState,
                    batches: Iterable[dict[str, jax.Array]], probe, count: int, seed: int,
                    latent_dim: int, fitted: dict[str, priors.Prior] | None = None,
                    decode_step: Callable | None = None) -> dict[str, float]:
  """FID, KID, precision and recall of `count` samples from p(z) and of the reconstructions of
  as many test images (from `batches`, model input), in the probe's feature space; and each
  set's checkerboard index and sharpness ratio against those test images (quality.py). Each
  fitted prior's samples ('samples_gmm10', ...) decode the same e ~ N(0, I) as p(z)'s,
  transformed."""
  outputs: dict[str, list[np.ndarray]] = {}
  seen = 0
  for index, batch in enumerate(batches):
    key = jax.random.PRNGKey(seed + QUALITY_SEED_OFFSET + index)
    latents = jax.random.normal(key, batch['image'].shape[:2] + (latent_dim,))
    images, _ = eval_step(train_state, batch['image'], latents, batch.get('condition'))
    images = {**images, 'test_images': batch['image']}
    for spec, prior in (fitted or {}).items():
      images[f'samples_{priors.label(spec)}'] = decode_step(
          train_state, prior_latents(prior, latents, key), batch.get('condition'))
    if jax.process_count() > 1:
      images = multihost_utils.process_allgather(images)
    for name, value in images.items():
      outputs.setdefault(name, []).append(np.asarray(value).reshape(-1, *value.shape[2:]))
    seen += int(np.prod(batch['image'].shape[:2])) * jax.process_count()
    if seen >= count:
      break
  extractor, reference = probe
  real = np.concatenate(outputs.pop('test_images'))[:count]
  metrics = {}
  for name, images in outputs.items():          # 'samples', and 'reconstructions' with an encoder
    images = np.concatenate(images)[:count]
    metrics.update(extractors.compare(extractor, reference, images, name))
    metrics[f'checkerboard_{name}'] = quality.checkerboard_index(images, real)
    metrics[f'sharpness_{name}'] = quality.sharpness_ratio(images, real)
  return metrics


# ---------------------------------------------------------------- the run
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> state.TrainState:
  """Train `config` in `workdir`, resuming from its newest usable checkpoint; returns the final
  state. One run at a time holds the workdir (workdir_lock)."""
  # ---- Checks: nothing below compiles before the config, workdir and data are known good.
  schema.check(config, device_count=jax.device_count(), process_count=jax.process_count(),
               local_device_count=jax.local_device_count())
  if config.quality.extractor == 'inception':
    inception.check_weights_path(config.quality.inception_weights)
  folder = check_workdir(workdir)
  lock = (workdir_lock.WorkdirLock(folder) if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock:
    return _train(config, folder)


def _train(config: ml_collections.ConfigDict, workdir: folders.Folder) -> state.TrainState:
  train_split, eval_split = open_data(config)
  columns = input_pipeline.condition_columns(train_split.attribute_names,
                                             config.model.condition_on)
  devices = jax.local_devices()
  grid_batch = grid_inputs(config, eval_split, devices, columns)

  # ---- Input: this process's part of every global batch, read ahead, on its devices.
  load = input_pipeline.training_batches(
      train_split, seed=config.seed, global_batch_size=config.global_batch_size,
      local_devices=len(devices), flip=config.data.flip, order=config.data.order,
      process_index=jax.process_index(), process_count=jax.process_count())
  batches = input_pipeline.TrainingIterator(load, devices, threads=config.data.reader_threads,
                                            condition_columns=columns)
  in_order = lambda split, limit: input_pipeline.eval_inputs(
      split, global_batch_size=config.global_batch_size, devices=devices,
      condition_columns=columns, process_index=jax.process_index(),
      process_count=jax.process_count(), max_batches=limit)
  eval_batches = functools.partial(in_order, eval_split)
  prior_batches = lambda: in_order(train_split, math.ceil(config.quality.prior_codes
                                                          / config.global_batch_size))
  probe = quality_probe(config)

  # ---- Model, optimisers and the initial state.
  training = state.create_training(config, DEVICE_AXIS)

  # ---- Restore the newest usable checkpoint, or start at step 0.
  checkpointer = checkpoints.Checkpointer(workdir, config.keep_checkpoints)
  train_state, window = training.initial_state, EMPTY_WINDOW
  restored = checkpointer.restore(train_state, config)
  if restored is not None:
    train_state, input_state = restored
    batches.set_state(input_state)
    window = input_state.get('report_window', EMPTY_WINDOW)
    logging.info('Resumed from step %d in %s.', int(train_state.step), checkpointer.directory)
  start_step = int(train_state.step)

  # ---- The update and evaluation steps; reports past the restored step are dropped.
  train_step = steps.make_pmapped_train_step(config, training.networks, training.optimizers)
  r1_every = config.loss.r1_every if steps.uses_r1(config) else 0
  r1_step = steps.make_pmapped_train_step(config, training.networks, training.optimizers,
                                          with_r1=True) if r1_every else None
  eval_step = steps.make_pmapped_eval_step(config, training.networks)
  specs = fitted_specs(config.quality) if training.networks.encoder is not None else ()
  encode_step = steps.make_pmapped_encode_step(training.networks) if specs else None
  decode_step = steps.make_pmapped_decode_step(training.networks) if specs else None
  sampler = resumed_sampler(config, workdir, start_step)
  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0,
                                       start_step=start_step)

  # ---- Preemption: SIGTERM asks for a checkpoint and a clean exit at the next step.
  preemption = {'requested': False}
  previous_handler = signal.signal(
      signal.SIGTERM, lambda signum, frame: preemption.update(requested=True))

  def preempted(step: int) -> bool:
    if jax.process_count() > 1:      # every process must stop at the same step
      return multihost_utils.reached_preemption_sync_point(step) or preemption['requested']
    return preemption['requested']

  # ---- The loop.
  total = config.num_train_steps
  eval_limit = config.eval_batches or None

  def report_finite(kind: str, values: dict[str, float]) -> None:
    report(writer, step, kind, check_finite(values, kind, step, checkpointer, config))

  intervals = (config.log_every_steps, config.image_every_steps, config.eval_every_steps,
               config.quality.every_steps, config.checkpoint_every_steps)
  history: list[tuple[int, int, Any]] = []      # (last step, steps, metrics) per dispatch
  fitted: dict[str, priors.Prior] = {}           # the priors of the last quality step
  interval_start, interval_steps = time.perf_counter(), 0
  step = start_step
  restore_handler = lambda: signal.signal(signal.SIGTERM, previous_handler)
  if step < total:
    logging.info('Compiling the train step, then training steps %d to %d.', step + 1, total)
  try:
    # The first failure is the one raised: a close that fails after it (on a full disk, every
    # flush does) is logged, never raised over it.
    with console.closing_after(('the SIGTERM handler', restore_handler),
                               ('the checkpoints', checkpointer.close),
                               ('the metric writers', writer.close)):
      while step < total:
        count, with_r1 = dispatch_plan(step, config.steps_per_dispatch, intervals, total,
                                       r1_every)
        batch = next_batches(batches, count)
        train_state, metrics = (r1_step if with_r1 else train_step)(
            train_state, batch['image'], batch.get('condition'))
        if step == start_step:          # the call returns once compiled; it runs on
          logging.info('Compiled in %.0f s; the first report comes at step %d.',
                       time.perf_counter() - interval_start,
                       min(config.log_every_steps * (step // config.log_every_steps + 1), total))
        step += count
        interval_steps += count
        history.append((step, count, metrics))
        # A preemption saves and stops: it runs no report that was not due at this step anyway,
        # so the resumed run's reports are those of a run never stopped.
        stop = preempted(step)
        due = lambda every: is_due(step, every, total)
        if not (stop or any(map(due, intervals))):
          continue
        host_history, history = per_step(jax.device_get(history)), []
        bad = first_non_finite(host_history)
        if bad is not None:
          raise NonFiniteLoss(stop_message(f'{bad[1]} is not finite', bad[0],
                                           checkpointer.latest_step(), config))
        window = fold_window(window, host_history)
        if due(config.log_every_steps):
          report_training(writer, step, total, window, interval_steps,
                          time.perf_counter() - interval_start, config.global_batch_size)
          window, interval_steps, interval_start = EMPTY_WINDOW, 0, time.perf_counter()
        if specs and due(config.quality.every_steps):       # before the grids that use them
          fitted = fit_priors(encode_step, train_state, prior_batches(), specs,
                              config.quality.prior_codes, config.seed)
          save_priors(fitted, workdir, step)
          if sampler is not None:
            sampler = Sampler(sampler.spec, fitted[sampler.spec], step)
        if due(config.image_every_steps):
          write_grids(eval_step, train_state, grid_batch, writer, step, config.grid_size,
                      sampler, decode_step, config.seed)
        if due(config.eval_every_steps):
          report_finite('eval', evaluate(eval_step, train_state, eval_batches(eval_limit),
                                         config.seed, config.model.latent_dim))
        if probe is not None and due(config.quality.every_steps):
          measured = {'quality': train_state}
          if config.quality.raw_decoder:      # the same draws through the decoder the EMA follows
            measured['quality_raw_decoder'] = train_state.replace(decoder_ema=None)
          for kind, decoded_by in measured.items():
            report_finite(kind, measure_quality(eval_step, decoded_by, eval_batches(None), probe,
                                                config.quality.num_samples, config.seed,
                                                config.model.latent_dim, fitted, decode_step))
        if stop or due(config.checkpoint_every_steps):
          save_checkpoint(checkpointer, step, train_state,
                          {**batches.get_state(), 'report_window': window}, config)
        if stop:
          logging.warning('Preempted: saved step %d; rerun the same command to continue.', step)
          break
  except (checkpoints.CheckpointWriteError, folders.WriteFailed) as error:
    raise type(error)(f'{error} {last_good_line(checkpointer)}') from None
  if jax.process_index() == 0:
    for line in run_summary(workdir, start_step, step, total, checkpointer.last_good,
                            probe is not None, config.quality.sampler):
      logging.info('%s', line)
  return train_state
