"""The convolution with the authors' geometry: padding k // 2 on every side, as the authors' code
(and PyTorch's `padding=2`) does. XLA's 'SAME' would pad (1, 2) for a stride-2, 5x5 conv on an
even input and shift the sampling grid by half a pixel. Every conv of the model is this one;
cpu_convolutions.py holds only how it runs and differentiates on XLA:CPU.
"""
from __future__ import annotations

import jax
from jax import lax

DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def conv2d(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Cross-correlation with symmetric padding k // 2.

  Args:
    x: [B, H, W, C_in].
    kernel: [k, k, C_in, C_out], k odd.
    stride: 1 or 2.
  Returns:
    [B, ceil(H / stride), ceil(W / stride), C_out].
  """
  pad = kernel.shape[0] // 2
  return lax.conv_general_dilated(
      x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=DIMENSION_NUMBERS)
