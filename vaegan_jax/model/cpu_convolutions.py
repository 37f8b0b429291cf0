"""XLA:CPU's forms of the convolutions' forward and gradients. GPUs and TPUs keep XLA's own
convolution gradients ('auto' chooses by backend); every form here is checked against plain
autodiff by a test. Which kernel library runs each op (XLA:CPU's own convolutions, YNNPACK for
reductions only) is set in XLA_FLAGS by vaegan_jax/xla_cpu.py, which stays import-light: the
package imports it before anything starts jax, and every tool imports the package.

The forms ('phases', the CPU's default; 'matmul'). The strided conv's own input gradient is slow
on XLA:CPU, so that input gradient, and the transposed conv's forward, run as four stride-1
"phase" convolutions (one per parity of the output's rows and columns), while the kernel
gradients stay XLA's own, each reading its input from a buffer of its own (`materialised`); a
stride-1 conv to at most 4 channels (the decoder's last, and the input gradient of the
discriminator's first) runs as a 1 x k conv to k times as many channels whose rows are summed
shifted. 'matmul' computes the strided kernel gradients instead as one matmul per kernel tap:
faster while YNNPACK ran XLA:CPU's convolutions, slower since it does not (docs/benchmarks.md).
`conv_transpose2d` is the adjoint of the stride-2 conv, with a custom VJP made of that strided
conv's own products: autodiff of an lhs-dilated convolution (what `flax.linen.ConvTranspose`
lowers to) makes XLA:CPU compute the kernel gradient at a few GFLOP/s.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from vaegan_jax.model.convolution import DIMENSION_NUMBERS, conv2d


def resolve_conv_gradients(choice: str) -> str:
  """'auto' is 'phases' on the CPU and 'xla' on GPU and TPU, where XLA's own are fastest; the
  other choices stay as they are (configs/schema.py lists them)."""
  if choice == 'auto':
    return 'phases' if jax.default_backend() == 'cpu' else 'xla'
  return choice


def _adjoint_kernel(kernel: jax.Array) -> jax.Array:
  """[k, k, C_in, C_out] -> [k, k, C_out, C_in], flipped: the kernel whose stride-1 correlation
  is the adjoint of the correlation by `kernel` (for padding k // 2 on both sides)."""
  return kernel[::-1, ::-1].transpose(0, 1, 3, 2)


def _adjoint_phase(k: int, parity: int) -> tuple[slice, tuple[int, int]]:
  """The taps of a flipped k x k kernel that reach the adjoint's outputs of `parity` along one
  axis, and the padding of the adjoint's input that lines them up.

  In the adjoint of `conv2d(., K, 2)`, output m = 2q + parity sums y[i] K[a] over 2i + a = m + p
  (p = k // 2, the forward's padding): the taps a of parity (parity + p), at y[q + d] with
  d = (parity + p - a) / 2. As a stride-1 correlation over y these are the flipped kernel's taps
  from (parity + p) % 2 in steps of 2, with y padded so that d runs over its whole range.
  """
  pad = k // 2
  return slice((parity + pad) % 2, None, 2), ((k - 1 - parity - pad) // 2, (parity + pad) // 2)


def _stride2_conv_adjoint_by_phases(y: jax.Array, kernel: jax.Array) -> jax.Array:
  """The adjoint of `conv2d(., kernel, 2)`, [B, H, W, C_out] -> [B, 2H, 2W, C_in], as four
  stride-1 convolutions of y, one per output (row, column) parity, interleaved.

  Each computes exactly its own H x W outputs: JAX's transpose of the phase form of the strided
  conv pads the phases fully and slices the border away, 10-44% more multiply-adds at the
  decoder's sizes and 1.4x its up1 layer's time (docs/benchmarks.md).
  """
  batch, height, width, _ = y.shape
  flipped = _adjoint_kernel(kernel)
  rows = []
  for row_parity in (0, 1):
    row_taps, row_pad = _adjoint_phase(kernel.shape[0], row_parity)
    columns = []
    for col_parity in (0, 1):
      col_taps, col_pad = _adjoint_phase(kernel.shape[1], col_parity)
      columns.append(lax.conv_general_dilated(y, flipped[row_taps, col_taps], (1, 1),
                                              (row_pad, col_pad),
                                              dimension_numbers=DIMENSION_NUMBERS))
    rows.append(jnp.stack(columns, axis=3))                  # [B, H, W, 2, C_in]
  return jnp.stack(rows, axis=2).reshape(batch, 2 * height, 2 * width, -1)


def _stride2_conv_adjoint(y: jax.Array, kernel: jax.Array, gradients: str) -> jax.Array:
  """The adjoint of `conv2d(., kernel, 2)`: [B, H, W, C_out] -> [B, 2H, 2W, C_in]."""
  if gradients != 'xla':
    return _stride2_conv_adjoint_by_phases(y, kernel)
  batch, height, width, _ = y.shape
  upsampled = jax.ShapeDtypeStruct((batch, 2 * height, 2 * width, kernel.shape[2]), y.dtype)
  (result,) = jax.linear_transpose(lambda u: conv2d(u, kernel, 2), upsampled)(y)
  return result


def _stride2_conv_kernel_gradient(x: jax.Array, output_cotangent: jax.Array,
                                  kernel_shape: tuple[int, ...], gradients: str) -> jax.Array:
  """d<conv2d(x, K, 2), output_cotangent>/dK, [k, k, C_in, C_out]."""
  if gradients != 'matmul':
    zeros = jnp.zeros(kernel_shape, x.dtype)
    _, pullback = jax.vjp(lambda k: conv2d(x, k, 2), zeros)
    return pullback(output_cotangent)[0]
  # 'matmul': one [C_in, N] x [N, C_out] matmul per tap, N = B * H_out * W_out, which beat
  # YNNPACK's kernel-gradient convolution on XLA:CPU several times over.
  k, _, in_features, out_features = kernel_shape
  pad = k // 2
  out_height, out_width = output_cotangent.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  cotangent = output_cotangent.reshape(-1, out_features)
  taps = []
  for row in range(k):
    for col in range(k):
      window = padded[:, row:row + 2 * out_height - 1:2, col:col + 2 * out_width - 1:2, :]
      taps.append(jnp.dot(window.reshape(-1, in_features).T, cotangent,
                          preferred_element_type=jnp.float32))
  return jnp.stack(taps).reshape(kernel_shape).astype(x.dtype)


def materialised(x: jax.Array) -> jax.Array:
  """x, as the result of a conditional: a buffer of its own that XLA cannot fuse away.

  XLA:CPU fuses an elementwise producer (a batch norm and ReLU, the transposed conv's phase sums)
  into each of its consumers. Into the [C, H, W, B] transpose that XLA's kernel gradient makes of
  the input, that puts the producer on strided, cache-hostile reads: 32% of the demo's step once,
  and 2.6x a plain transpose's time (docs/benchmarks.md). A conditional's operand and result are
  buffers. Both branches are the identity; the barrier only keeps XLA from seeing so and removing
  the conditional (`lax.optimization_barrier` alone is removed before fusion on XLA:CPU).
  """
  return lax.cond(jnp.isfinite(x.reshape(-1)[0]), lambda u: u, lax.optimization_barrier, x)


def _kept_for_kernel_gradient(x: jax.Array, gradients: str) -> jax.Array:
  """The residual a kernel gradient reads: materialised on the CPU's paths, x with 'xla'."""
  return x if gradients == 'xla' else materialised(x)


# A stride-1 conv to at most this many channels (an image's) runs by rows on the CPU's paths.
FEW_CHANNELS = 4


def _stride1_conv_by_rows(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv2d(x, kernel, 1)` as a 1 x k conv to k * C_out channels, one set per kernel row, whose k
  row sets are then summed, each shifted to its row: the same multiply-adds.

  XLA:CPU's conv to 3 channels runs 4x slower than this, and its kernel gradient 1.8x slower
  than this form's; to 8 channels they tie, from 16 XLA's is 1.6x faster (docs/benchmarks.md).
  The row sums are float32, as XLA's conv accumulates.
  """
  k, _, in_features, out_features = kernel.shape
  batch, height, width, _ = x.shape
  pad = k // 2
  by_row = kernel.transpose(1, 2, 0, 3).reshape(1, k, in_features, k * out_features)
  rows = lax.conv_general_dilated(x, by_row, (1, 1), ((0, 0), (pad, pad)),
                                  dimension_numbers=DIMENSION_NUMBERS,
                                  preferred_element_type=jnp.float32)
  rows = jnp.pad(rows.reshape(batch, height, width, k, out_features),
                 ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))     # [B, H + 2 pad, W, k, C_out]
  return sum(rows[:, row:row + height, :, row] for row in range(k)).astype(x.dtype)


def _stride1_conv(x: jax.Array, kernel: jax.Array, gradients: str) -> jax.Array:
  """`conv2d(x, kernel, 1)`, by rows on the CPU's paths when it makes at most FEW_CHANNELS."""
  if gradients != 'xla' and kernel.shape[3] <= FEW_CHANNELS:
    return _stride1_conv_by_rows(x, kernel)
  return conv2d(x, kernel, 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def stride1_conv2d(x: jax.Array, kernel: jax.Array, gradients: str = 'xla') -> jax.Array:
  """`conv2d(x, kernel, 1)` with XLA's own gradients, or with 'phases' or 'matmul' (the CPU's):
  x read from a buffer of its own (`materialised`) by the kernel gradient, and the forward and
  the input gradient by rows where they make at most FEW_CHANNELS (`_stride1_conv_by_rows`)."""
  return _stride1_conv(x, kernel, gradients)


def _stride1_conv2d_forward(x, kernel, gradients):
  return _stride1_conv(x, kernel, gradients), (_kept_for_kernel_gradient(x, gradients), kernel)


def _stride1_conv2d_backward(gradients, residuals, output_cotangent):
  x, kernel = residuals
  if gradients == 'xla':
    _, pullback = jax.vjp(lambda x, kernel: conv2d(x, kernel, 1), x, kernel)
    return pullback(output_cotangent)
  _, kernel_pullback = jax.vjp(lambda k: _stride1_conv(x, k, gradients), kernel)
  return (_stride1_conv(output_cotangent, _adjoint_kernel(kernel), gradients),
          kernel_pullback(output_cotangent)[0])


stride1_conv2d.defvjp(_stride1_conv2d_forward, _stride1_conv2d_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def strided_conv2d(x: jax.Array, kernel: jax.Array, gradients: str = 'xla') -> jax.Array:
  """`conv2d(x, kernel, 2)` whose backward pass `gradients` chooses.

  'xla' uses XLA's own convolution gradients; 'phases' (the CPU's) computes the input gradient as
  stride-1 phase convolutions, and its kernel gradient reads x from a buffer of its own
  (`materialised`); 'matmul' computes the kernel gradient as per-tap matmuls as well.
  """
  return conv2d(x, kernel, 2)


def _strided_conv2d_forward(x, kernel, gradients):
  # 'matmul' cuts its taps' windows from x, and reads them faster through the producer's fusion
  # (materialised, the demo's step was slower; docs/benchmarks.md).
  kept = x if gradients == 'matmul' else _kept_for_kernel_gradient(x, gradients)
  return conv2d(x, kernel, 2), (kept, kernel)


def _strided_conv2d_backward(gradients, residuals, output_cotangent):
  x, kernel = residuals
  return (_stride2_conv_adjoint(output_cotangent, kernel, gradients),
          _stride2_conv_kernel_gradient(x, output_cotangent, kernel.shape, gradients))


strided_conv2d.defvjp(_strided_conv2d_forward, _strided_conv2d_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose2d(x: jax.Array, kernel: jax.Array, gradients: str = 'xla') -> jax.Array:
  """Stride-2 transposed convolution mapping H x W to 2H x 2W.

  Equal to PyTorch's ConvTranspose2d(k, stride=2, padding=k // 2, output_padding=1): it is the
  adjoint of `conv2d(., kernel, 2)` applied to a [B, 2H, 2W, C_out] input. Its gradients are
  those of that strided conv (see `strided_conv2d`).

  Args:
    x: [B, H, W, C_in].
    kernel: [k, k, C_out, C_in], the kernel of the strided conv it is the adjoint of.
    gradients: 'xla', 'phases' or 'matmul', as for `strided_conv2d`; also picks the forward's
      form (phase convolutions unless 'xla').
  Returns:
    [B, 2H, 2W, C_out].
  """
  return _stride2_conv_adjoint(x, kernel, gradients)


def _conv_transpose2d_forward(x, kernel, gradients):
  return (_stride2_conv_adjoint(x, kernel, gradients),
          (_kept_for_kernel_gradient(x, gradients), kernel))


def _conv_transpose2d_backward(gradients, residuals, output_cotangent):
  x, kernel = residuals
  # <T(x, K), g> = <x, C(g, K)>: both gradients are those of the strided conv C at input g.
  return (conv2d(output_cotangent, kernel, 2),
          _stride2_conv_kernel_gradient(output_cotangent, x, kernel.shape, gradients))


conv_transpose2d.defvjp(_conv_transpose2d_forward, _conv_transpose2d_backward)


def convolve(x: jax.Array, kernel: jax.Array, stride: int, gradients: str) -> jax.Array:
  """`conv2d(x, kernel, stride)` (stride 1 or 2) in the form `gradients` picks
  (`resolve_conv_gradients`)."""
  conv = strided_conv2d if stride == 2 else stride1_conv2d
  return conv(x, kernel, resolve_conv_gradients(gradients))


def transposed(x: jax.Array, kernel: jax.Array, gradients: str) -> jax.Array:
  """`conv_transpose2d` in the form `gradients` picks (`resolve_conv_gradients`)."""
  return conv_transpose2d(x, kernel, resolve_conv_gradients(gradients))
