"""Every config key in one table: its type, its valid choices, and whether a resumed run may
change it; `check` validates a whole config against the table before anything is built.

The builders (models, losses, state, input_pipeline) assume a config that passed `check`, so
they hold no checks of their own. `check` runs once at start-up (`train.train_and_evaluate`,
the benchmarks, a run read back by `runs.load_run`), and every message names the key, the value
it got and what would be valid.

Every number has a range a real run could use, beside its key in the table (ranges.py holds
those the command lines share), and every float must be finite. Of the package it imports only
ranges.py, model/priors.py (the one parser of a prior's name) and data/dataset_layout.py (what a
dataset's name may be), none of which imports a module that imports this one, so any module may
take its names from here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from typing import Any, Callable

import ml_collections

from vaegan_jax import ranges
from vaegan_jax.data import dataset_layout
from vaegan_jax.model import priors

MODEL_KINDS = ('vaegan', 'vae', 'vae_disl', 'gan')
PASSES = ('separate', 'joint')
NETWORK_NAMES = ('encoder', 'decoder', 'discriminator')
COMPUTE_DTYPES = ('float32', 'bfloat16')
CONV_GRADIENTS = ('auto', 'xla', 'matmul', 'phases')
UPSAMPLES = ('transposed', 'resize_conv')
GAN_FORMS = ('logit', 'eps')
REDUCTIONS = ('sum', 'mean')
FAKES = ('prior_and_reconstruction', 'prior')
DECODER_GAN_MODES = ('saturating', 'non_saturating')
OPTIMIZER_NAMES = ('rmsprop', 'adam')
SCHEDULES = ('constant', 'anneal')
FLIP_MODES = ('none', 'batch', 'example')
ORDERS = ('shuffled', 'sequential')
EXTRACTORS = ('domain', 'inception', 'none')


class ConfigError(ValueError):
  """A config value that cannot run; the message names the key and what would be valid."""


# ---------------------------------------------------------------- one key
Problem = Callable[[str, Any], 'str | None']     # (key, value) -> what is wrong, or None


def choice(*valid: Any) -> Problem:
  return lambda key, value: (None if value in valid else
                             f'{key}={value!r} is not a valid choice; choose one of {valid}.')


def integer(low: int, high: int, zero_means: str = '') -> Problem:
  """An integer in [low, high]: every count and size has a range a real run could use, so that a
  typo (1e20 steps, a latent size of 400,000,000) is refused before anything is built.
  zero_means: what 0 stands for, where it is special ('all')."""
  def problem(key: str, value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    special = f' (0: {zero_means})' if zero_means else ''
    return None if ok else f'{key}={value!r}: must be an integer from {low:,} to {high:,}{special}.'
  return problem


def number(low: float, high: float, low_open: bool = False, high_open: bool = False,
           example: str = '') -> Problem:
  """A finite number in the interval from low to high (open at an end where said)."""
  interval = f'{"(" if low_open else "["}{low:g}, {high:g}{")" if high_open else "]"}'

  def problem(key: str, value: Any) -> str | None:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and (low < value if low_open else low <= value)
          and (value < high if high_open else value <= high))
    return None if ok else (f'{key}={value!r} must be a finite number in {interval}'
                            f'{", e.g. " + example if example else ""}.')
  return problem


SEED = integer(*ranges.SEEDS)
STEPS = integer(*ranges.STEP_COUNTS)
SIZE = integer(*ranges.BATCH_SIZES)             # widths, hidden features, a batch
LEARNING_RATE = number(*ranges.LEARNING_RATES)
DECAY = number(0, 1, high_open=True, example='0.5 or 0.999')   # a beta, an EMA's decay


def boolean(key: str, value: Any) -> str | None:
  return None if isinstance(value, bool) else f'{key}={value!r}: must be True or False.'


def text(key: str, value: Any) -> str | None:
  ok = isinstance(value, str) and len(value) <= 4096
  return None if ok else f'{key}={value!r}: must be a string (a path: at most 4,096 characters).'


def dataset_name(key: str, value: Any) -> str | None:
  ok = isinstance(value, str) and dataset_layout.NAME_FORMAT.fullmatch(value)
  return None if ok else (f'{key}={value!r}: a dataset name is at most 100 letters, digits, '
                          f'"_", "-" and "." (not first).')


def splits(key: str, value: Any) -> str | None:
  parts = value.split('+') if isinstance(value, str) else [None]
  ok = all(part in dataset_layout.SPLITS for part in parts) and len(set(parts)) == len(parts)
  return None if ok else (f'{key}={value!r}: must be one of {dataset_layout.SPLITS}, or several '
                          f'joined by "+" (e.g. "train+validation").')


def sha256_or_empty(key: str, value: Any) -> str | None:
  ok = isinstance(value, str) and (value == '' or re.fullmatch('[0-9a-fA-F]{64}', value))
  return None if ok else (f'{key}={value!r} must be the full SHA-256 (64 hex digits, as '
                          f'sha256sum prints it), or empty for the default file\'s.')


def widths(key: str, value: Any) -> str | None:
  ok = (isinstance(value, (tuple, list)) and 0 < len(value) <= 8
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**13
                for v in value))
  return None if ok else (f'{key}={value!r}: must be a tuple of 1 to 8 channel counts, each from '
                          f'1 to 8,192.')


def attribute_names(key: str, value: Any) -> str | None:
  names = tuple(value) if isinstance(value, (tuple, list)) else None
  ok = (names is not None and len(names) <= 10_000
        and all(isinstance(name, str) and 0 < len(name) <= 200 for name in names)
        and len(set(names)) == len(names))
  return None if ok else (f'{key}={value!r} must be distinct attribute names, e.g. ("Male", '
                          f'"Smiling"), or () for the unconditional model.')


def prior_specs(key: str, value: Any) -> str | None:
  specs = tuple(value) if isinstance(value, (tuple, list)) else None
  if specs is None:
    return f'{key}={value!r} must be a tuple of priors, e.g. ("gaussian", "gmm:10"), or ().'
  for spec in specs:
    try:
      priors.check_spec(spec)
    except priors.PriorError as error:
      return f'{key}: {error}'
  return None


def sampler_spec(key: str, value: Any) -> str | None:
  try:
    priors.check_spec(value)
  except priors.PriorError as error:
    return f'{key}: {error}'
  return None


@dataclasses.dataclass(frozen=True)
class Setting:
  """One key: what makes a value wrong, whether a resumed run may change it (settings that
  change neither the state's arrays nor which batches come next), and for a key added after
  runs were saved without it, the value those runs had."""
  problem: Problem
  resumable: bool = False
  before_it_existed: Any = None


def _optimizer_settings() -> dict[str, Setting]:
  # The schedule's settings may change on resume: the train step sets each network's learning
  # rate from the step at every update. decay, eps and weight_decay live in the optimizer state.
  per_network = dict(
      name=Setting(choice(*OPTIMIZER_NAMES)),
      learning_rate=Setting(LEARNING_RATE, resumable=True),
      decay=Setting(DECAY), eps=Setting(number(0, 1)),
      b1=Setting(DECAY, before_it_existed=0.5), b2=Setting(DECAY, before_it_existed=0.999),
      weight_decay=Setting(number(0, 1)),
      schedule=Setting(choice(*SCHEDULES), resumable=True),
      end_learning_rate=Setting(LEARNING_RATE, resumable=True),
      anneal_power=Setting(number(0, 100, low_open=True), resumable=True),
      anneal_epochs=Setting(integer(1, 10**6), resumable=True),
      steps_per_epoch=Setting(STEPS, resumable=True))
  return {f'optimizer.{network}.{key}': setting
          for network in NETWORK_NAMES for key, setting in per_network.items()}


SCHEMA: dict[str, Setting] = {
    'seed': Setting(SEED),
    'global_batch_size': Setting(SIZE),
    'num_train_steps': Setting(STEPS, resumable=True),
    'model.kind': Setting(choice(*MODEL_KINDS)),
    'model.passes': Setting(choice(*PASSES)),
    'model.upsample': Setting(choice(*UPSAMPLES), before_it_existed='transposed'),
    'model.spectral_norm': Setting(boolean, before_it_existed=False),
    'model.resolution': Setting(integer(*ranges.RESOLUTIONS)),
    'model.image_channels': Setting(choice(1, 3)),
    'model.latent_dim': Setting(integer(*ranges.LATENT_SIZES)),
    'model.encoder_hidden_features': Setting(SIZE),
    'model.decoder_dense_channels': Setting(SIZE),
    'model.discriminator_hidden_features': Setting(SIZE),
    'model.compute_dtype': Setting(choice(*COMPUTE_DTYPES)),
    'model.conv_gradients': Setting(choice(*CONV_GRADIENTS), resumable=True),
    'model.condition_on': Setting(attribute_names),
    'model.encoder_channels': Setting(widths),
    'model.decoder_channels': Setting(widths),
    'model.discriminator_channels': Setting(widths),
    'loss.feature_layer': Setting(text),
    'loss.reduction': Setting(choice(*REDUCTIONS)),
    'loss.gamma': Setting(number(0, 1e6)),
    'loss.gan_form': Setting(choice(*GAN_FORMS)),
    'loss.gan_eps': Setting(number(0, 1)),
    'loss.decoder_gan': Setting(choice(*DECODER_GAN_MODES)),
    'loss.fakes': Setting(choice(*FAKES)),
    'loss.real_vs_gen_weight': Setting(number(0, 1, low_open=True, high_open=True)),
    'loss.gan_real_vs_gen_weight': Setting(number(0, 1, low_open=True, high_open=True)),
    'loss.gating': Setting(boolean),
    'loss.equilibrium': Setting(number(0, 100)),
    'loss.margin': Setting(number(0, 100)),
    'loss.r1_weight': Setting(number(0, 1e4), before_it_existed=0.0),
    'loss.r1_every': Setting(integer(1, 10**6), before_it_existed=16),
    **_optimizer_settings(),
    'data.name': Setting(dataset_name),
    'data.data_dir': Setting(text, resumable=True),
    'data.raw_dir': Setting(text, resumable=True),
    'data.synthetic_images': Setting(integer(0, ranges.IMAGE_COUNTS[1], 'none drawn'),
                                     resumable=True),
    'data.train_split': Setting(splits),
    'data.eval_split': Setting(splits),
    'data.augmented_copies': Setting(integer(0, ranges.IMAGE_COUNTS[1], 'none')),
    'data.augment_seed': Setting(SEED),
    'data.order': Setting(choice(*ORDERS)),
    'data.flip': Setting(choice(*FLIP_MODES)),
    'data.reader_threads': Setting(integer(1, 256), resumable=True),
    'data.max_image_bytes': Setting(integer(*ranges.IMAGE_BYTES), resumable=True),
    'data.max_image_pixels': Setting(integer(*ranges.IMAGE_PIXELS), resumable=True),
    'log_every_steps': Setting(STEPS, resumable=True),
    'image_every_steps': Setting(STEPS, resumable=True),
    'eval_every_steps': Setting(STEPS, resumable=True),
    'eval_batches': Setting(integer(0, 10**9, 'all'), resumable=True),
    'quality.every_steps': Setting(STEPS, resumable=True),
    'quality.num_samples': Setting(integer(*ranges.IMAGE_COUNTS), resumable=True),
    'quality.extractor': Setting(choice(*EXTRACTORS), resumable=True),
    'quality.extractor_steps': Setting(STEPS, resumable=True),
    'quality.inception_weights': Setting(text, resumable=True),
    'quality.inception_sha256': Setting(sha256_or_empty, resumable=True),
    'quality.priors': Setting(prior_specs, resumable=True),
    'quality.prior_codes': Setting(integer(*ranges.IMAGE_COUNTS), resumable=True),
    'quality.raw_decoder': Setting(boolean, resumable=True),
    'quality.sampler': Setting(sampler_spec, resumable=True),
    'checkpoint_every_steps': Setting(STEPS, resumable=True),
    'keep_checkpoints': Setting(integer(1, 10**6), resumable=True),
    'grid_size': Setting(integer(1, 64), resumable=True),
    'steps_per_dispatch': Setting(integer(1, 1024), resumable=True),
    'decoder_ema_decay': Setting(DECAY, before_it_existed=0.0),
    'decoder_ema_start': Setting(integer(0, ranges.STEP_COUNTS[1]), before_it_existed=0),
}

RESUMABLE = tuple(key for key, setting in SCHEMA.items() if setting.resumable)
# Keys that shape the run, added since runs were first saved: {key: the value those runs had}.
ADDED_SINCE = {key: setting.before_it_existed for key, setting in SCHEMA.items()
               if setting.before_it_existed is not None}


# ---------------------------------------------------------------- keys and values
def flatten_config(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """{'model.latent_dim': 128, ...} with tuples as lists, as they come back from JSON."""
  as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  flat = {}

  def walk(prefix: str, value: Any) -> None:
    if isinstance(value, dict):
      for key, item in value.items():
        walk(f'{prefix}{key}.', item)
    else:
      flat[prefix[:-1]] = value
  walk('', json.loads(json.dumps(as_dict)))
  return flat


def with_added_keys(saved: dict[str, Any], defaults: ml_collections.ConfigDict
                    ) -> ml_collections.ConfigDict:
  """A config saved before some keys existed, completed: resumable keys with `defaults'` values
  (they shape neither the state nor the batches), ADDED_SINCE's with the value such runs had.
  So an old run still reads."""
  config = ml_collections.ConfigDict(saved)
  present = flatten_config(saved)
  for key in RESUMABLE + tuple(ADDED_SINCE):
    if key not in present:
      *sections, name = key.split('.')
      node, default = config, defaults
      for section in sections:
        node, default = node[section], default[section]
      node[name] = ADDED_SINCE.get(key, default[name])
  return config


def unknown_key_message(config: ml_collections.ConfigDict | dict, key: str) -> str | None:
  """For a key the config lacks: which keys its section does have; None if the key exists."""
  keys = flatten_config(config)
  if key in keys:
    return None
  section = key.rpartition('.')[0]
  sections = sorted({name.rpartition('.')[0] for name in keys} - {''})
  if section and section not in sections:
    return (f'Unknown config section {section!r} (in {key!r}); the sections are: '
            f'{", ".join(sections)}.')
  valid = sorted(name for name in keys if name.rpartition('.')[0] == section)
  where = f' of {section}' if section else ''
  return f'Unknown config key {key!r}; the keys{where} are: {", ".join(valid)}.'


def discriminator_layer_names(num_convs: int) -> tuple[str, ...]:
  """The names the discriminator gives its layers' features, input to output (models.py)."""
  return tuple(f'conv{i}' for i in range(1, num_convs + 1)) + ('dense1', 'dense2')


# ---------------------------------------------------------------- the whole config
def check(config: ml_collections.ConfigDict, *, device_count: int = 1, process_count: int = 1,
          local_device_count: int | None = None) -> None:
  """Raises ConfigError for the first problem: a key missing from or unknown to SCHEMA, a bad
  value, or values that do not fit together (the architecture and the resolution, Dis_l and the
  discriminator, the batch and the devices and processes)."""
  values = _values(config)
  missing = sorted(set(SCHEMA) - set(values))
  unknown = sorted(set(values) - set(SCHEMA))
  if missing or unknown:
    raise ConfigError(f'The config does not match configs/schema.py: missing {missing}, '
                      f'unknown {unknown}. Start configs from configs/celeba64.py.')
  for key, setting in SCHEMA.items():
    problem = setting.problem(key, values[key])
    if problem:
      raise ConfigError(problem)
  for problem in (_architecture_problem(config.model),
                  _feature_layer_problem(config.model, config.loss.feature_layer),
                  _priors_problem(config.model.kind, config.quality.priors),
                  _sampler_problem(config.model.kind, config.quality.sampler),
                  _raw_decoder_problem(config.quality.raw_decoder, config.decoder_ema_decay),
                  _batch_problem(config.global_batch_size, device_count, process_count,
                                 local_device_count or device_count // process_count)):
    if problem:
      raise ConfigError(problem)


def _values(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Flat key -> value, keeping tuples (flatten_config's JSON round trip makes them lists)."""
  flat = {}

  def walk(prefix: str, node: Any) -> None:
    for key, item in node.items():
      if isinstance(item, (ml_collections.ConfigDict, dict)):
        walk(f'{prefix}{key}.', item)
      else:
        flat[f'{prefix}{key}'] = item
  walk('', config)
  return flat


def _architecture_problem(model: Any) -> str | None:
  resolution = model.resolution
  for name, stages in (('encoder_channels', len(model.encoder_channels)),
                       ('decoder_channels', len(model.decoder_channels)),
                       ('discriminator_channels', len(model.discriminator_channels) - 1)):
    if resolution % 2 ** stages or resolution // 2 ** stages < 2:
      return (f'model.{name} has {stages} stride-2 stages, which do not divide '
              f'model.resolution={resolution} into a map of at least 2x2. Use the channel tuples '
              f"of configs/celeba64.py's ARCHITECTURES for resolution 32, 64 or 128.")
  return None


def _feature_layer_problem(model: Any, feature_layer: str) -> str | None:
  valid = discriminator_layer_names(len(model.discriminator_channels))
  if model.kind in ('vaegan', 'vae_disl') and feature_layer not in valid:
    return (f'loss.feature_layer={feature_layer!r} is not a discriminator layer; choose one of '
            f'{valid} (the paper uses the last conv, conv4 at 64x64).')
  return None


def _priors_problem(kind: str, specs: Any) -> str | None:
  if kind == 'gan' and specs:
    return (f'quality.priors={tuple(specs)} are fitted to the encoder\'s codes, and a gan run '
            f'has no encoder; set quality.priors=().')
  return None


def _sampler_problem(kind: str, spec: str) -> str | None:
  if kind == 'gan' and spec != 'standard':
    return (f'quality.sampler={spec!r} is fitted to the encoder\'s codes, and a gan run has no '
            f'encoder; set quality.sampler=standard.')
  return None


def _raw_decoder_problem(raw_decoder: bool, ema_decay: float) -> str | None:
  if raw_decoder and not ema_decay:
    return ('quality.raw_decoder=True measures the trained decoder beside its EMA, and this run '
            'keeps no EMA; set decoder_ema_decay (e.g. 0.99) or quality.raw_decoder=False.')
  return None


def _batch_problem(global_batch_size: int, device_count: int, process_count: int,
                   local_device_count: int) -> str | None:
  if global_batch_size % device_count:
    return (f'global_batch_size={global_batch_size} does not split over {device_count} '
            f'devices; make it a multiple of {device_count}.')
  if global_batch_size % process_count:
    return (f'global_batch_size={global_batch_size} does not split over {process_count} '
            f'processes; make it a multiple of {process_count}.')
  if (global_batch_size // process_count) % local_device_count:
    return (f'The per-process batch {global_batch_size // process_count} does not split over '
            f'{local_device_count} local devices.')
  return None
