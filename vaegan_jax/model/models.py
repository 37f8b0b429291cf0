"""Encoder, Decoder and Discriminator of VAE/GAN (Larsen et al. 2016), as flax.linen modules.

The modules are used only through `init` / `apply`, so each network is a pure function of
(params, batch_stats, inputs). The architecture is the paper's 64x64 CelebA table (Larsen et al.
2016, appendix; the authors' code in andersbll/autoencoding_beyond_pixels, architectures.py,
`img64x64`); 32x32 and 128x128 drop or add one stride-2 stage through the channel tuples of the
config (`configs/celeba64.py`). All kernels are 5x5.

Conditional variants (the paper's attribute-conditioned generation; no conditional code survives
in the authors' repository) take an attribute vector y in {-1, +1}^A:
  decoder        [z; y] is the dense layer's input: y must steer what is drawn.
  encoder        y joins the flattened conv features at the hidden dense layer: q(z | x, y), as
                 in a conditional VAE, so z need not spend capacity on what y already says.
  discriminator  y joins the flattened conv features at the hidden dense layer: D judges the pair
                 (x, y), so a sample that ignores y is told apart from the data (a conditional GAN).
                 The conv layers never see y, so Dis_l at a conv layer stays the same y-free
                 similarity metric as in the unconditional model.

Batch norm follows the authors' code (architectures.py and DeepPy's batch_normalization.py):
running = 0.9 * running + 0.1 * batch, epsilon 1e-6 after convolutions and 1e-5 after dense
layers, scale 1 and shift 0 at init. With `axis_name` set the
batch statistics are averaged over that device axis, so N devices normalise exactly as one device
would on the global batch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from vaegan_jax.model.layers import Conv, ConvTranspose, Dense

BATCH_NORM_MOMENTUM = 0.9
CONV_BATCH_NORM_EPSILON = 1e-6
DENSE_BATCH_NORM_EPSILON = 1e-5


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
  conv_gradients: str = 'auto'       # see cpu_convolutions.resolve_conv_gradients

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


def nearest_upsample(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], each pixel repeated 2 x 2."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Decoder(nn.Module):
  """z [B, latent_dim] (and y [B, A]) -> image [B, R, R, C] in [-1, 1] (tanh), float32.

  A dense layer makes a [S, S, dense_channels] map with S = R / 2**len(channels); each entry of
  `channels` doubles its side, with one stride-2 transposed conv (upsample='transposed', the
  code's) or a nearest-neighbour x2 and a stride-1 conv ('resize_conv' [ours]); a stride-1 conv
  makes the image channels.
  """
  resolution: int
  dense_channels: int
  channels: Sequence[int]
  image_channels: int = 3
  condition_features: int = 0        # A: the width of y, 0 for the unconditional model
  axis_name: str | None = None
  dtype: Any = jnp.float32
  conv_gradients: str = 'auto'       # see cpu_convolutions.resolve_conv_gradients
  upsample: str = 'transposed'       # or 'resize_conv'

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
      if self.upsample == 'resize_conv':
        h = Conv(features, stride=1, use_bias=False, dtype=self.dtype,
                 gradients=self.conv_gradients, name=f'up{index}')(nearest_upsample(h))
      else:
        h = ConvTranspose(features, dtype=self.dtype, gradients=self.conv_gradients,
                          name=f'up{index}')(h)
      h = nn.relu(_Norm(CONV_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                        name=f'up{index}_norm')(h, train))
    h = Conv(self.image_channels, stride=1, dtype=self.dtype, gradients=self.conv_gradients,
             name='to_image')(h)
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
  conv_gradients: str = 'auto'       # see cpu_convolutions.resolve_conv_gradients
  spectral_norm: bool = False        # [ours] every conv and dense layer (layers.py)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, condition: jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    features = {}
    h = x
    for index, width in enumerate(self.channels, start=1):
      name = f'conv{index}'
      first = index == 1
      h = Conv(width, stride=1 if first else 2, use_bias=first, dtype=self.dtype,
               gradients=self.conv_gradients, spectral_norm=self.spectral_norm, name=name)(h)
      features[name] = h
      if not first:
        h = _Norm(CONV_BATCH_NORM_EPSILON, self.axis_name, self.dtype, name=f'{name}_norm')(h, train)
      h = nn.relu(h)
    h = with_condition(h.reshape(h.shape[0], -1), condition, self.condition_features,
                       'Discriminator')
    h = Dense(self.hidden_features, use_bias=False, dtype=self.dtype,
              spectral_norm=self.spectral_norm, name='dense1')(h)
    features['dense1'] = h
    h = nn.relu(_Norm(DENSE_BATCH_NORM_EPSILON, self.axis_name, self.dtype,
                      name='dense1_norm')(h, train))
    logit = Dense(1, dtype=self.dtype, spectral_norm=self.spectral_norm, name='dense2')(h)
    features['dense2'] = logit
    return logit[:, 0].astype(jnp.float32), features


@dataclasses.dataclass(frozen=True)
class Networks:
  """The linen modules of one model kind; `None` where the kind has no such network."""
  encoder: Encoder | None
  decoder: Decoder
  discriminator: Discriminator | None


def build_networks(config: Any, axis_name: str | None = None) -> Networks:
  """The modules that `config.model.kind` uses, for a config that passed configs/schema.check.

  Args:
    config: the whole config (its `model` section is read).
    axis_name: the device axis to average batch-norm statistics over, or None.
  """
  model_config = config.model
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
      upsample=model_config.upsample, **shared)
  discriminator = None if kind == 'vae' else Discriminator(
      channels=tuple(model_config.discriminator_channels),
      hidden_features=model_config.discriminator_hidden_features,
      spectral_norm=model_config.spectral_norm, **shared)
  return Networks(encoder, decoder, discriminator)
