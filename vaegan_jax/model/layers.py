"""The authors' layers: 5x5 convolutions padded k // 2 (convolution.py), the stride-2 transposed
convolution as the adjoint of the strided one, dense layers, and the initialiser of their code
(DeepPy's). How each convolution runs and differentiates is one call into cpu_convolutions.py,
which picks XLA:CPU's forms on the CPU and XLA's own elsewhere.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from vaegan_jax.model import cpu_convolutions


def fan_in_uniform(fan_in: int) -> nn.initializers.Initializer:
  """Uniform(-a, a) with a = 1 / sqrt(3 * fan_in): the authors' code's weight init (DeepPy's
  AutoFiller, deeppy/filler.py: 1 / sqrt(fan_in) / sqrt(3))."""
  limit = 1.0 / (3.0 * fan_in) ** 0.5

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def spectrally_normalised(layer: nn.Module, kernel: jax.Array) -> jax.Array:
  """[ours] kernel / sigma (Miyato et al. 2018), sigma the largest singular value of the kernel
  as a [fan_in, features] matrix, estimated by one power iteration per application from the
  vector u [features] that the layer keeps among its batch statistics ('spectral_u'). u moves
  where they are updated (train mode; the pass whose statistics a step keeps decides which,
  passes.py) and is only read where not; the gradient flows through the kernel, not u or v."""
  matrix = kernel.reshape(-1, kernel.shape[-1])
  u = layer.variable('batch_stats', 'spectral_u',
                     lambda: jnp.full((matrix.shape[1],), matrix.shape[1] ** -0.5, jnp.float32))
  unit = lambda vector: vector / (jnp.linalg.norm(vector) + 1e-12)
  v = unit(matrix @ u.value)                                    # [fan_in]
  new_u = lax.stop_gradient(unit(matrix.T @ v))                  # [features]
  v = lax.stop_gradient(v)
  if layer.is_mutable_collection('batch_stats') and not layer.is_initializing():
    u.value = new_u
  return kernel / (v @ matrix @ new_u)


def _with_bias(layer: nn.Module, y: jax.Array) -> jax.Array:
  """y plus the layer's zero-initialised bias 'bias' [features], if it has one."""
  if not layer.use_bias:
    return y
  return y + layer.param('bias', nn.initializers.zeros, (layer.features,)).astype(layer.dtype)


class Conv(nn.Module):
  """k x k convolution, stride 1 or 2, padding k // 2; computes in `dtype`, keeps float32 params."""
  features: int
  stride: int = 1
  use_bias: bool = True
  kernel_size: int = 5
  dtype: Any = jnp.float32
  gradients: str = 'auto'
  spectral_norm: bool = False        # [ours] see spectrally_normalised

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, in_features = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', fan_in_uniform(k * k * in_features),
                        (k, k, in_features, self.features))
    if self.spectral_norm:
      kernel = spectrally_normalised(self, kernel)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.stride not in (1, 2):
      raise ValueError(f'Conv {self.name}: stride {self.stride}; use 1 or 2.')
    y = cpu_convolutions.convolve(x, kernel, self.stride, self.gradients)
    return _with_bias(self, y)


class ConvTranspose(nn.Module):
  """k x k stride-2 transposed convolution doubling height and width: the adjoint of the
  stride-2 conv (`cpu_convolutions.conv_transpose2d`).

  The fan-in of the init is k * k * C_out, as in the authors' code: DeepPy's
  BackwardConvolution stores its weights as [C_in, C_out, k, k] and its AutoFiller takes the
  product of all but the first axis (deeppy/expr/nnet/spatial.py, deeppy/filler.py).
  """
  features: int
  use_bias: bool = False
  kernel_size: int = 5
  dtype: Any = jnp.float32
  gradients: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, in_features = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', fan_in_uniform(k * k * self.features),
                        (k, k, self.features, in_features))
    y = cpu_convolutions.transposed(x.astype(self.dtype), kernel.astype(self.dtype),
                                    self.gradients)
    return _with_bias(self, y)


class Dense(nn.Module):
  """Fully connected layer with the fan-in uniform init; computes in `dtype`, keeps float32
  params."""
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  spectral_norm: bool = False        # [ours] see spectrally_normalised

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    kernel = self.param('kernel', fan_in_uniform(in_features), (in_features, self.features))
    if self.spectral_norm:
      kernel = spectrally_normalised(self, kernel)
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
    return _with_bias(self, y)
