"""A trained run, read back from its workdir: its own config, its networks and its latest state.

The checkpoint carries the config that wrote it, so a workdir alone is enough. encode and decode
are jitted, in eval mode (running batch statistics; the encoder's mean, as the authors' code). A
conditional run's encode and decode also take y, [N, A] in {-1, +1} (`Run.conditions` makes it
from a dataset's attributes).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from vaegan_jax import console, files, folders
from vaegan_jax.configs import celeba64, schema
from vaegan_jax.data import input_pipeline, preprocess
from vaegan_jax.model import models, priors
from vaegan_jax.training import checkpoints, state


class RunNotFound(FileNotFoundError):
  """A workdir holds no checkpoint."""


@dataclasses.dataclass(frozen=True)
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  networks: models.Networks
  state: state.TrainState
  step: int

  @property
  def condition_on(self) -> tuple[str, ...]:
    """The attributes a conditional run takes as y; () for an unconditional one."""
    return tuple(self.config.model.condition_on)

  def conditions(self, attributes: np.ndarray, attribute_names: Sequence[str]) -> np.ndarray:
    """A dataset's bool attributes [N, A] (columns named by attribute_names) -> this run's y."""
    columns = input_pipeline.condition_columns(attribute_names, self.condition_on)
    return np.asarray(input_pipeline.conditions_of(attributes, columns))

  def encode(self, images: np.ndarray, conditions: np.ndarray | None = None,
             batch_size: int = 256) -> np.ndarray:
    """uint8 images [N, R, R, C] (and y [N, A] for a conditional run) -> the encoder's mean."""
    if self.networks.encoder is None:
      raise ValueError(f'{self.workdir} is a {self.config.model.kind} run: it has no encoder.')
    return _batched(functools.partial(_encode, self.networks.encoder, self.state.encoder),
                    batch_size, images, conditions)

  def decode(self, latents: np.ndarray, conditions: np.ndarray | None = None,
             batch_size: int = 256) -> np.ndarray:
    """[N, L] (and y [N, A] for a conditional run) -> images [N, R, R, C] in [-1, 1] (by the
    decoder's EMA where the run keeps one)."""
    return _batched(functools.partial(_decode, self.networks.decoder,
                                      state.sampling_decoder(self.state)),
                    batch_size, np.asarray(latents, np.float32), conditions)

  def prior(self, spec: str, data_dir: str | None = None) -> priors.Prior:
    """The prior `spec` (model/priors.py) for this run's checkpoint: the fit its workdir keeps
    for this step (the training loop's, or an earlier call's); else fitted now, as the loop
    fits it (the encoder's means of the first quality.prior_codes training images, seeded by
    the run's seed), and kept there for the next call."""
    latent_dim = self.config.model.latent_dim
    if priors.check_spec(spec) == 'standard':
      return priors.standard(latent_dim)
    path = priors.fit_path(self.workdir, spec, self.step)
    if os.path.exists(path):
      return priors.load(path, spec, latent_dim)
    split = self.split('train_split', data_dir)
    train = split.read(np.arange(min(self.config.quality.prior_codes, len(split))))
    conditions = (self.conditions(train['attributes'], split.attribute_names)
                  if self.condition_on else None)
    prior = priors.fit(spec, self.encode(train['image'], conditions), self.config.seed)
    try:
      priors.save(prior, folders.Folder(self.workdir), priors.fit_name(spec, self.step))
    except (OSError, files.UnsafeFile) as error:    # a folder this user may not write, a link
      logging.warning('The fit of prior %s is not kept in %s (%s); it is made again next time.',
                      spec, path, getattr(error, 'strerror', None) or error)
    return prior

  def split(self, which: str, data_dir: str | None = None) -> input_pipeline.PreparedSplit:
    """The run's own 'train_split' or 'eval_split' of its dataset (data_dir: where it lies, if
    not where the run read it)."""
    return input_pipeline.open_configured(self.config, self.config.data[which], data_dir)


def provenance(loaded: dict[str, Run]) -> dict[str, dict[str, Any]]:
  """What a figure or table was made from: {label: {'workdir', 'kind', 'step'}}."""
  return {label: {'workdir': run.workdir, 'kind': run.config.model.kind, 'step': run.step}
          for label, run in loaded.items()}


def _batched(function, batch_size: int, inputs: np.ndarray, conditions: np.ndarray | None
             ) -> np.ndarray:
  part = lambda array, start: None if array is None else array[start:start + batch_size]
  return np.concatenate([np.asarray(function(part(inputs, start), part(conditions, start)))
                         for start in range(0, len(inputs), batch_size)])


def _variables(network: state.NetworkState) -> dict[str, Any]:
  return {'params': network.params, 'batch_stats': network.batch_stats}


@functools.partial(jax.jit, static_argnums=0)
def _encode(module, network, images, conditions):
  mu, _ = module.apply(_variables(network), preprocess.to_model_range(images), train=False,
                       condition=conditions)
  return mu


@functools.partial(jax.jit, static_argnums=0)
def _decode(module, network, latents, conditions):
  return module.apply(_variables(network), latents, train=False, condition=conditions)


def load_run(workdir: str) -> Run:
  """The latest checkpoint of `workdir`, with the config it was written with."""
  directory = os.path.join(os.path.expanduser(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise_not_found(workdir, directory)
  with checkpoints.CheckpointReader(directory) as checkpointer:
    newest = checkpointer.newest_config()
    if newest is None:
      raise_not_found(workdir, directory)
    step, saved = newest
    config = checked_config(saved, f'{directory}/{step}')
    training = state.create_training(config)
    restored, _ = checkpointer.restore(training.initial_state, config)
  return Run(workdir=workdir, config=config, networks=training.networks, state=restored,
             step=int(restored.step))


def checked_config(saved: Any, where: str) -> ml_collections.ConfigDict:
  """The config a checkpoint holds, through the same checks as the command line's (sizes
  included: a latent size of 400,000,000 is refused before anything is built); a ConfigError
  naming the checkpoint otherwise."""
  try:
    config = _with_tuples(schema.with_added_keys(saved, celeba64.get_config()))
    schema.check(config)
  except schema.ConfigError as error:
    raise schema.ConfigError(f'The config of the checkpoint {where} is not one vaegan-train '
                             f'accepts: {error}') from None
  except (KeyError, TypeError, ValueError, AttributeError) as error:
    raise schema.ConfigError(f'The config of the checkpoint {where} is not one vaegan-train '
                             f'writes ({type(error).__name__}).') from None
  return config


def raise_not_found(workdir: str, directory: str) -> None:
  raise RunNotFound(f'No checkpoint in {directory}: train a run there first '
                    f'({console.command("vaegan-train")} --workdir={workdir} with the --config of '
                    f'its model, e.g. --config=vaegan_jax/configs/synthetic.py:vae). Runs next '
                    f'to it: {", ".join(runs_beside(workdir)) or "none"}.')


def parse_runs(specs: Sequence[str]) -> dict[str, str]:
  """['VAE=runs/vae', ...] -> {'VAE': 'runs/vae', ...}."""
  parsed = {}
  for spec in specs:
    label, separator, workdir = spec.partition('=')
    if not separator or not label or not workdir:
      raise ValueError(f'--run={spec!r}: expected LABEL=WORKDIR, e.g. --run=VAE/GAN=runs/vaegan.')
    if label in parsed:
      raise ValueError(f'--run={spec!r}: the label {label!r} is given twice; give each run a '
                       f'label of its own.')
    parsed[label] = workdir
  return parsed


def runs_beside(workdir: str) -> list[str]:
  """Workdirs in the same folder as `workdir` that hold checkpoints."""
  parent = os.path.dirname(os.path.abspath(os.path.expanduser(workdir)))
  if not os.path.isdir(parent):
    return []
  return sorted(os.path.join(parent, name) for name in os.listdir(parent)
                if os.path.isdir(os.path.join(parent, name, 'checkpoints')))


def _with_tuples(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """JSON gave back lists; the model's channel settings are tuples (hashable module fields)."""
  for key, value in config.model.items():
    if isinstance(value, list):
      config.model[key] = tuple(value)
  return config
