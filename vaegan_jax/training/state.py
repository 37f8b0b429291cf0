"""The train state of the three networks, and their three optax optimizers.

As google-research/vdm's TrainState docstring advises for several optimizers, this project has
its own state class: one pytree with the step, the RNG key, and per network its params, batch
statistics and optimizer state. The optax transformations themselves are static and live in
`Optimizers`, outside the pytree.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaegan_jax.configs.schema import NETWORK_NAMES
from vaegan_jax.model import models
from vaegan_jax.model.models import Networks


@flax.struct.dataclass
class NetworkState:
  """One network's trainable state."""
  params: Any
  batch_stats: Any
  opt_state: optax.OptState


@flax.struct.dataclass
class AveragedNetwork:
  """[ours] An exponential moving average of one network's params and batch statistics."""
  params: Any
  batch_stats: Any


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes; `None` for a network the model kind lacks."""
  step: jax.Array                        # int32 scalar: updates applied so far
  rng: jax.Array                         # uint32[2] raw key; each step folds in the step number
  encoder: NetworkState | None
  decoder: NetworkState
  discriminator: NetworkState | None
  # [ours] the decoder's EMA where config.decoder_ema_decay > 0: what samples, reconstructions,
  # grids, metrics and figures decode with (`sampling_decoder`); None otherwise
  decoder_ema: AveragedNetwork | None = None


def moving_average(average: AveragedNetwork, network: NetworkState, decay: float
                   ) -> AveragedNetwork:
  """decay * average + (1 - decay) * network, leaf by leaf (params and batch statistics)."""
  mix = lambda old, new: decay * old + (1.0 - decay) * new
  return AveragedNetwork(params=jax.tree.map(mix, average.params, network.params),
                         batch_stats=jax.tree.map(mix, average.batch_stats, network.batch_stats))


def sampling_decoder(state: TrainState) -> NetworkState | AveragedNetwork:
  """The decoder that test-time outputs come from: its EMA where the run keeps one."""
  return state.decoder if state.decoder_ema is None else state.decoder_ema


@dataclasses.dataclass(frozen=True)
class Optimizers:
  """One optax transformation and one learning-rate schedule per network."""
  encoder: optax.GradientTransformation | None
  decoder: optax.GradientTransformation
  discriminator: optax.GradientTransformation | None
  schedules: dict[str, optax.Schedule]


def learning_rate_schedule(opt_config: Any) -> optax.Schedule:
  """The learning rate as a function of the global step.

  'constant': the paper's 3e-4. 'anneal': the authors' code, per epoch e of E,
  lr0 - (e / E)^power * (lr0 - lr_end).
  """
  if opt_config.schedule == 'constant':
    return optax.constant_schedule(opt_config.learning_rate)
  start, end = opt_config.learning_rate, opt_config.end_learning_rate
  # One rate per epoch, computed once in float64 on the host and rounded to float32: the step
  # then only indexes a table, so every backend gives the same rates (a GPU's float32 pow and
  # division are not the CPU's, and at the end 1 ulp of the fraction is 1e-4 of the rate).
  fraction = (np.arange(opt_config.anneal_epochs + 1) / opt_config.anneal_epochs
              ) ** opt_config.anneal_power
  rates = jnp.asarray(start - fraction * (start - end), jnp.float32)

  def anneal(step):
    return rates[jnp.minimum(step // opt_config.steps_per_epoch, opt_config.anneal_epochs)]

  return anneal


# The layers whose kernels carry no weight decay: the authors' architectures.py gives wdecay to
# every conv and dense layer it builds, but the encoder's mean and log-variance layers come from
# model/ae.py's NormalEncoder, made with dp.AutoFiller() and no weight_decay.
UNDECAYED_LAYERS = ('mu', 'log_variance')


def is_decayed(params: Any) -> Any:
  """A mask of `params`: True for the kernels that carry weight decay (biases, batch-norm
  scales and shifts, and UNDECAYED_LAYERS carry none)."""
  def decayed(path, _):
    names = [getattr(entry, 'key', None) for entry in path]
    return names[-1] == 'kernel' and not set(names) & set(UNDECAYED_LAYERS)
  return jax.tree_util.tree_map_with_path(decayed, params)


def _rmsprop_with_weight_decay(learning_rate: float, decay: float, eps: float,
                               weight_decay: float) -> optax.GradientTransformation:
  # Coupled decay as in DeepPy (deeppy/parameter.py, Parameter._add_penalty): the gradient of
  # the penalty weight_decay * ||w||^2, 2 * weight_decay * w, is added before RMSProp. ms starts
  # at 0, eps sits outside the square root, no momentum (DeepPy's RMSProp).
  return optax.chain(
      optax.add_decayed_weights(2.0 * weight_decay, mask=is_decayed),
      optax.rmsprop(learning_rate, decay=decay, eps=eps, initial_scale=0.0, eps_in_sqrt=False))


def _adam_with_weight_decay(learning_rate: float, b1: float, b2: float, eps: float,
                            weight_decay: float) -> optax.GradientTransformation:
  # [ours] Adam (Kingma and Ba 2015), with the same coupled weight decay as the RMSProp above.
  return optax.chain(optax.add_decayed_weights(2.0 * weight_decay, mask=is_decayed),
                     optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))


def make_optimizer(opt_config: Any) -> optax.GradientTransformation:
  """One network's optax transformation: the code's RMSProp, or Adam [ours].

  The learning rate is an injected hyperparameter that the train step sets from the global step,
  so a network whose update the equilibrium gating skips keeps the same schedule as the others.
  Each network has its own rates, so two time-scale rates (Heusel et al. 2017) are a setting.
  """
  shared = dict(learning_rate=opt_config.learning_rate, eps=opt_config.eps,
                weight_decay=opt_config.weight_decay)
  if opt_config.name == 'adam':
    return optax.inject_hyperparams(_adam_with_weight_decay)(b1=opt_config.b1, b2=opt_config.b2,
                                                             **shared)
  return optax.inject_hyperparams(_rmsprop_with_weight_decay)(decay=opt_config.decay, **shared)


def build_optimizers(config: Any, networks: Networks) -> Optimizers:
  """The three optimizers of `config.optimizer`, for the networks the model kind has."""
  present = {name: getattr(networks, name) is not None for name in NETWORK_NAMES}
  return Optimizers(
      **{name: make_optimizer(config.optimizer[name]) if present[name] else None
         for name in NETWORK_NAMES},
      schedules={name: learning_rate_schedule(config.optimizer[name])
                 for name in NETWORK_NAMES if present[name]})


def _init_network(module: Any, optimizer: optax.GradientTransformation, key: jax.Array,
                  example_input: jax.Array, example_condition: jax.Array | None) -> NetworkState:
  variables = module.init(key, example_input, train=False, condition=example_condition)
  params = variables['params']
  return NetworkState(params=params, batch_stats=variables.get('batch_stats', {}),
                      opt_state=optimizer.init(params))


def init_train_state(config: Any, networks: Networks, optimizers: Optimizers,
                     seed: int | None = None) -> TrainState:
  """A fresh state: the authors' init for all three networks, step 0."""
  seed = config.seed if seed is None else seed
  rng = jax.random.PRNGKey(seed)
  encoder_key, decoder_key, discriminator_key, train_key = jax.random.split(rng, 4)
  model = config.model
  image = jnp.zeros((1, model.resolution, model.resolution, model.image_channels), jnp.float32)
  latent = jnp.zeros((1, model.latent_dim), jnp.float32)
  condition = jnp.zeros((1, len(model.condition_on)), jnp.float32) if model.condition_on else None
  decoder = _init_network(networks.decoder, optimizers.decoder, decoder_key, latent, condition)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=train_key,
      encoder=None if networks.encoder is None else _init_network(
          networks.encoder, optimizers.encoder, encoder_key, image, condition),
      decoder=decoder,
      discriminator=None if networks.discriminator is None else _init_network(
          networks.discriminator, optimizers.discriminator, discriminator_key, image, condition),
      decoder_ema=_copy_of(decoder) if config.decoder_ema_decay > 0 else None)


def _copy_of(network: NetworkState) -> AveragedNetwork:
  """An EMA that starts at `network`, in buffers of its own (the step donates the state, and
  one buffer must not be donated twice)."""
  copy = lambda tree: jax.tree.map(lambda leaf: jnp.array(leaf, copy=True), tree)
  return AveragedNetwork(copy(network.params), copy(network.batch_stats))


@dataclasses.dataclass(frozen=True)
class Training:
  """What a run builds from its config: the modules, their optimizers and the initial state."""
  networks: Networks
  optimizers: Optimizers
  initial_state: TrainState


def create_training(config: Any, axis_name: str | None = None, seed: int | None = None
                    ) -> Training:
  """Networks, then their optimizers, then the initial state, for a config that passed
  configs/schema.check. axis_name: the device axis batch norm averages over (None outside pmap);
  seed: the init seed (default config.seed)."""
  networks = models.build_networks(config, axis_name)
  optimizers = build_optimizers(config, networks)
  return Training(networks, optimizers, init_train_state(config, networks, optimizers, seed))
