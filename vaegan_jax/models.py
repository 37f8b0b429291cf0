"""Encoder, Decoder and Discriminator of VAE/GAN (Larsen et al. 2016), as flax.linen modules.

The modules are used only through `init` / `apply`, so each network is a pure function of
(params, batch_stats, inputs). The architecture is the paper's 64x64 CelebA table (see
`../shared/PAPER.md`); 32x32 and 128x128 drop or add one stride-2 stage through the channel
tuples of the config (`configs/celeba64.py`). All kernels are 5x5.

Conditional variants (the paper's attribute-conditioned generation; no conditional code survives
in the authors' repository) take an attribute vector y in {-1, +1}^A:
  decoder        [z; y] is the dense layer's input: y must steer what is drawn.
  encoder        y joins the flattened conv features at the hidden dense layer: q(z | x, y), as
                 in a conditional VAE, so z need not spend capacity on what y already says.
  discriminator  y joins the flattened conv features at the hidden dense layer: D judges the pair
                 (x, y), so a sample that ignores y is told apart from the data (a conditional GAN).
                 The conv layers never see y, so Dis_l at a conv layer stays the same y-free
                 similarity metric as in the unconditional model.

Batch norm follows the authors' code: running = 0.9 * running + 0.1 * batch, epsilon 1e-6 after
convolutions and 1e-5 after dense layers, scale 1 and shift 0 at init. With `axis_name` set the
batch statistics are averaged over that device axis, so N devices normalise exactly as one device
would on the global batch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from vaegan_jax.layers import Conv, ConvTranspose, Dense, resolve_conv_gradients
from vaegan_jax.losses import check_loss_config

BATCH_NORM_MOMENTUM = 0.9
CONV_BATCH_NORM_EPSILON = 1e-6
DENSE_BATCH_NORM_EPSILON = 1e-5
MODEL_KINDS = ('vaegan', 'vae', 'vae_disl', 'gan')


class _Norm(nn.Module):
  """Batch norm with the authors' momentum; `epsilon` differs for conv and dense layers."""
  epsilon: float
  axis_name: str | None
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM,
                        epsilon=self.epsilon, axis_name=self.axis_name, dtype=self.dtype,
                        name='batch_norm')(x)


def with_condition(h: jax.Array, condition: jax.Array | None, features: int, where: str
                   ) -> jax.Array:
  """[h; y] along the last axis when the network is conditional (`features` > 0), else h.

  Raises ValueError when y is missing, unexpected, or of the wrong width.
  """
  if features == 0:
    if condition is not None:
      raise ValueError(f'{where} is unconditional (model.condition_on is empty) but was given a '
                       f'condition; pass None, or train a conditional model.')
    return h
  if condition is None or condition.shape != (h.shape[0], features):
    got = None if condition is None else condition.shape
    raise ValueError(f'{where} is conditioned on {features} attributes: it needs a condition of '
                     f'shape {(h.shape[0], features)} in {{-1, +1}}, got {got}.')
  return jnp.concatenate([h, condition.astype(h.dtype)], axis=-1)


class Encoder(nn.Module):
  """x [B, R, R, C] in [-1, 1] (and y [B, A]) -> (mu [B, latent_dim], log-variance), float32."""
  channels: Sequence[int]
  hidden_features: int
  latent_dim: int
  condition_features: int = 0        # A: the width of y, 0 for the unconditional model
  axis_name: str | None = None
  dtype: Any = jnp.float32
  conv_gradients: str = 'auto'       # see layers.resolve_conv_gradients

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, condition: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    h = x
    for index, features in enumerate(self.channels, start=1):
      h = Conv(features, stride=2, use_bias=False, dtype=self.dtype,
               gradients=self.conv_gradients, name=f'conv{index}')(h)
      h = nn.relu(_Norm(CONV_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                        name=f'conv{index}_norm')(h, train))
    h = with_condition(h.reshape(h.shape[0], -1), condition, self.condition_features, 'Encoder')
    h = Dense(self.hidden_features, use_bias=False, dtype=self.dtype, name='dense1')(h)
    h = nn.relu(_Norm(DENSE_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                      name='dense1_norm')(h, train))
    mu = Dense(self.latent_dim, dtype=self.dtype, name='mu')(h)
    log_variance = Dense(self.latent_dim, dtype=self.dtype, name='log_variance')(h)
    return mu.astype(jnp.float32), log_variance.astype(jnp.float32)


class Decoder(nn.Module):
  """z [B, latent_dim] (and y [B, A]) -> image [B, R, R, C] in [-1, 1] (tanh), float32.

  A dense layer makes a [S, S, dense_channels] map with S = R / 2**len(channels); each entry of
  `channels` is one stride-2 transposed conv; a stride-1 conv makes the image channels.
  """
  resolution: int
  dense_channels: int
  channels: Sequence[int]
  image_channels: int = 3
  condition_features: int = 0        # A: the width of y, 0 for the unconditional model
  axis_name: str | None = None
  dtype: Any = jnp.float32
  conv_gradients: str = 'auto'       # see layers.resolve_conv_gradients

  @nn.compact
  def __call__(self, z: jax.Array, train: bool, condition: jax.Array | None = None) -> jax.Array:
    start = self.resolution // 2 ** len(self.channels)
    h = with_condition(z, condition, self.condition_features, 'Decoder')
    h = Dense(start * start * self.dense_channels, use_bias=False, dtype=self.dtype,
              name='dense1')(h)
    h = nn.relu(_Norm(DENSE_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                      name='dense1_norm')(h, train))
    h = h.reshape(h.shape[0], start, start, self.dense_channels)
    for index, features in enumerate(self.channels, start=1):
      h = ConvTranspose(features, dtype=self.dtype, gradients=self.conv_gradients,
                        name=f'up{index}')(h)
      h = nn.relu(_Norm(CONV_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                        name=f'up{index}_norm')(h, train))
    h = Conv(self.image_channels, stride=1, dtype=self.dtype, name='to_image')(h)
    return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
  """image [B, R, R, C] (and y [B, A]) -> (logit [B], {layer name: features}), float32.

  `channels[0]` is a stride-1 conv with bias and no batch norm; every later entry is a stride-2
  conv followed by batch norm. Then a hidden dense layer with batch norm and the logit layer.
  The features of a layer are its output before batch norm and ReLU (the paper's Dis_l is
  'conv4', the 4th conv's output, 256 channels at 8x8 for 64x64 inputs).
  """
  channels: Sequence[int]
  hidden_features: int
  condition_features: int = 0        # A: the width of y, 0 for the unconditional model
  axis_name: str | None = None
  dtype: Any = jnp.float32
  conv_gradients: str = 'auto'       # see layers.resolve_conv_gradients

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, condition: jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    features = {}
    h = x
    for index, width in enumerate(self.channels, start=1):
      name = f'conv{index}'
      first = index == 1
      h = Conv(width, stride=1 if first else 2, use_bias=first, dtype=self.dtype,
               gradients=self.conv_gradients, name=name)(h)
      features[name] = h
      if not first:
        h = _Norm(CONV_BATCH_NORM_EPSILON, self.axis_name, self.dtype, name=f'{name}_norm')(h, train)
      h = nn.relu(h)
    h = with_condition(h.reshape(h.shape[0], -1), condition, self.condition_features,
                       'Discriminator')
    h = Dense(self.hidden_features, use_bias=False, dtype=self.dtype, name='dense1')(h)
    features['dense1'] = h
    h = nn.relu(_Norm(DENSE_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                      name='dense1_norm')(h, train))
    logit = Dense(1, dtype=self.dtype, name='dense2')(h)
    features['dense2'] = logit
    return logit[:, 0].astype(jnp.float32), features


def discriminator_layer_names(num_convs: int) -> tuple[str, ...]:
  """The names `Discriminator` gives its layers' features, input to output."""
  return tuple(f'conv{i}' for i in range(1, num_convs + 1)) + ('dense1', 'dense2')


@dataclasses.dataclass(frozen=True)
class Networks:
  """The linen modules of one model kind; `None` where the kind has no such network."""
  encoder: Encoder | None
  decoder: Decoder
  discriminator: Discriminator | None


def check_model_config(model_config: Any, feature_layer: str) -> None:
  """Raises ValueError naming the problem and the valid choices, before anything compiles."""
  if model_config.kind not in MODEL_KINDS:
    raise ValueError(f'model.kind={model_config.kind!r} is unknown; choose one of {MODEL_KINDS}.')
  resolution = model_config.resolution
  for name, stages in (('encoder_channels', len(model_config.encoder_channels)),
                       ('decoder_channels', len(model_config.decoder_channels)),
                       ('discriminator_channels', len(model_config.discriminator_channels) - 1)):
    if resolution % 2 ** stages or resolution // 2 ** stages < 2:
      raise ValueError(
          f'model.{name} has {stages} stride-2 stages, which do not divide '
          f'model.resolution={resolution} into a map of at least 2x2. Use the channel tuples of '
          f"configs/celeba64.py's ARCHITECTURES for resolution 32, 64 or 128.")
  resolve_conv_gradients(model_config.conv_gradients)
  condition_on = tuple(model_config.condition_on)
  if not all(isinstance(name, str) and name for name in condition_on) or len(
      set(condition_on)) != len(condition_on):
    raise ValueError(f'model.condition_on={condition_on!r} must be distinct attribute names, '
                     f'e.g. ("Male", "Smiling"), or () for the unconditional model.')
  valid_layers = discriminator_layer_names(len(model_config.discriminator_channels))
  if model_config.kind in ('vaegan', 'vae_disl') and feature_layer not in valid_layers:
    raise ValueError(f'loss.feature_layer={feature_layer!r} is not a discriminator layer; '
                     f'choose one of {valid_layers} (the paper uses the last conv, conv4 at 64x64).')


def build_networks(config: Any, axis_name: str | None = None) -> Networks:
  """Checks the config, then builds the modules that `config.model.kind` uses.

  Args:
    config: the whole config (its `model` section, and `loss.feature_layer` for the check).
    axis_name: the device axis to average batch-norm statistics over, or None.
  Raises:
    ValueError: for an unknown kind, feature layer, gradient choice or loss setting, or a
      resolution the channel tuples do not fit, before anything is traced or compiled.
  """
  model_config = config.model
  check_model_config(model_config, config.loss.feature_layer)
  check_loss_config(config.loss)
  dtype = jnp.dtype(model_config.compute_dtype)
  kind = model_config.kind
  shared = dict(axis_name=axis_name, dtype=dtype, conv_gradients=model_config.conv_gradients,
                condition_features=len(model_config.condition_on))
  encoder = None if kind == 'gan' else Encoder(
      channels=tuple(model_config.encoder_channels),
      hidden_features=model_config.encoder_hidden_features,
      latent_dim=model_config.latent_dim, **shared)
  decoder = Decoder(
      resolution=model_config.resolution, dense_channels=model_config.decoder_dense_channels,
      channels=tuple(model_config.decoder_channels), image_channels=model_config.image_channels,
      **shared)
  discriminator = None if kind == 'vae' else Discriminator(
      channels=tuple(model_config.discriminator_channels),
      hidden_features=model_config.discriminator_hidden_features, **shared)
  return Networks(encoder, decoder, discriminator)
