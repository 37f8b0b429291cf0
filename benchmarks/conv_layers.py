r"""Times every convolution of the paper's 64x64 networks alone, in JAX and in PyTorch.

  .venv/bin/python benchmarks/conv_layers.py              # JAX: its three gradient choices
  .venv/bin/python benchmarks/conv_layers.py --forms      # + stride-2 rewrites
  .venv-torch/bin/python benchmarks/conv_layers.py --framework=torch
  .venv/bin/python benchmarks/conv_layers.py --smoke      # tiny shapes, one repeat

Per layer (batch 64, NHWC in JAX, channels_last in PyTorch) it prints the best of --repeats
times, in ms, of the forward pass and of both gradients (input and kernel), and then one JSON
line. JAX times `model.conv_gradients` 'phases' (the CPU default), 'matmul' and 'xla'. --forms
also times rewrites of the stride-2 forward, each checked against XLA's conv first: the four
phase convolutions ('phase_convs'), space-to-depth with a 3x3 kernel over 4C channels (by XLA's
conv, and by Winograd's F(4x4, 3x3) as 36 dots), im2col with one dot, and one dot per row of
kernel taps; and rewrites of the stride-2 kernel gradient beside XLA's own (the default's,
'xla_kernel_gradient') and one matmul per tap ('matmul_kernel_gradient'), each checked against
XLA's autodiff: the taps' windows cut from the four phases of the padded input (unstrided
copies), every window in one im2col matrix and one dot, and contiguous row ranges of the
flattened phases against a padded cotangent. It imports one framework only, so it runs in either
venv.
"""
from __future__ import annotations

import argparse
import json
import time

# (name, H, W, C_in, C_out, kind): kind s2 a stride-2 conv, s1 a stride-1 conv, t a stride-2
# transposed conv from H x W to 2H x 2W; the encoder's, the discriminator's and the decoder's.
LAYERS = (
    ('encoder conv1', 64, 64, 3, 64, 's2'), ('encoder conv2', 32, 32, 64, 128, 's2'),
    ('encoder conv3', 16, 16, 128, 256, 's2'), ('discriminator conv1', 64, 64, 3, 32, 's1'),
    ('discriminator conv2', 64, 64, 32, 128, 's2'),
    ('discriminator conv3', 32, 32, 128, 256, 's2'),
    ('discriminator conv4', 16, 16, 256, 256, 's2'), ('decoder up1', 8, 8, 256, 256, 't'),
    ('decoder up2', 16, 16, 256, 128, 't'), ('decoder up3', 32, 32, 128, 32, 't'),
    ('decoder out', 64, 64, 32, 3, 's1'),
)
SMOKE_LAYERS = (('s2', 8, 8, 3, 4, 's2'), ('s1', 8, 8, 4, 4, 's1'), ('t', 4, 4, 4, 3, 't'))


def best_ms(run, repeats: int) -> float:
  run()                                          # compile, first touch
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return 1e3 * min(times)


# ---------------------------------------------------------------- JAX
def tap_windows(x, row):
  """Row `row` of a stride-2, 5x5 conv's taps: the five windows [B, H/2, W/2, C] of the padded x
  that taps (row, 0..4) meet."""
  import jax.numpy as jnp

  padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  height, width = x.shape[1] // 2, x.shape[2] // 2
  return [padded[:, row:row + 2 * height - 1:2, col:col + 2 * width - 1:2] for col in range(5)]


def space_to_depth_operands(x, kernel):
  """A stride-2 5x5 conv as a stride-1 3x3 one: the padded x's 2x2 blocks [B, H/2 + 3, W/2 + 3,
  4C], and the kernel, zero-padded to 6x6, as three taps of two [3, 3, 4C, O]."""
  import jax.numpy as jnp

  batch, height, width, channels = x.shape
  padded = jnp.pad(x, ((0, 0), (2, 4), (2, 4), (0, 0)))
  side_h, side_w = padded.shape[1] // 2, padded.shape[2] // 2
  blocks = padded.reshape(batch, side_h, 2, side_w, 2, channels).transpose(0, 1, 3, 2, 4, 5)
  wide = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  wide = wide.reshape(3, 2, 3, 2, channels, -1).transpose(0, 2, 1, 3, 4, 5)
  return (blocks.reshape(batch, side_h, side_w, 4 * channels),
          wide.reshape(3, 3, 4 * channels, -1))


# Winograd's F(4x4, 3x3) (Lavin and Gray, 2016): a 4x4 output tile from a 6x6 input tile d as
# A^T [(G k G^T) * (B^T d B)] A, 36 products per channel pair where the direct conv has 144.
WINOGRAD_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
               (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
WINOGRAD_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
              (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
WINOGRAD_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def combine(matrix, arrays):
  """[sum_j matrix[i][j] * arrays[j] for each row i]: zero coefficients skipped, +-1 as adds."""
  rows = []
  for coefficients in matrix:
    terms = [a if c == 1 else -a if c == -1 else c * a for c, a in zip(coefficients, arrays) if c]
    rows.append(sum(terms[1:], terms[0]))
  return rows


def winograd_conv3x3(x, kernel, height, width):
  """VALID 3x3 stride-1 conv of x [B, >= height + 2, >= width + 2, C] by kernel [3, 3, C, O],
  cropped to [B, height, width, O]: the tiles' transforms as elementwise adds, and 36 dots
  [B * tiles, C] x [C, O]."""
  import jax.numpy as jnp

  tiles_h, tiles_w = -(-height // 4), -(-width // 4)
  rows, cols = 4 * tiles_h + 2, 4 * tiles_w + 2
  x = jnp.pad(x, ((0, 0), (0, max(0, rows - x.shape[1])), (0, max(0, cols - x.shape[2])),
                  (0, 0)))[:, :rows, :cols]
  channels, outputs = kernel.shape[2:]
  inputs = []                                    # B^T d B: 36 arrays [B * tiles, C]
  for band in combine(WINOGRAD_BT, [x[:, i:i + rows - 5:4] for i in range(6)]):
    inputs += [v.reshape(-1, channels)
               for v in combine(WINOGRAD_BT, [band[:, :, j:j + cols - 5:4] for j in range(6)])]
  g = jnp.asarray(WINOGRAD_G, jnp.float32)
  weights = jnp.einsum('ai,ijco,bj->abco', g, kernel, g).reshape(36, channels, outputs)
  products = [jnp.dot(v, u) for v, u in zip(inputs, weights)]
  grid = [products[6 * a:6 * a + 6] for a in range(6)]
  columns = [combine(WINOGRAD_AT, [grid[a][b] for a in range(6)]) for b in range(6)]
  y = jnp.stack([jnp.stack(combine(WINOGRAD_AT, [columns[b][i] for b in range(6)]))
                 for i in range(4)])             # [4, 4, B * tiles, O]: A^T M A
  y = y.reshape(4, 4, x.shape[0], tiles_h, tiles_w, outputs).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(x.shape[0], 4 * tiles_h, 4 * tiles_w, outputs)[:, :height, :width]


def strided_forms():
  """The stride-2, 5x5 forward rewritten, each (x [B, H, W, C], kernel [5, 5, C, O]) -> y."""
  import jax.numpy as jnp
  from jax import lax

  def phase_convs(x, kernel):
    # Tap a = 2p + r only ever meets padded input rows of parity r: four stride-1 VALID convs.
    height, width = x.shape[1] // 2, x.shape[2] // 2
    padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    total = 0.0
    for row_parity in (0, 1):
      for col_parity in (0, 1):
        sub_kernel = kernel[row_parity::2, col_parity::2]
        phase = padded[:, row_parity::2, col_parity::2][
            :, :height + sub_kernel.shape[0] - 1, :width + sub_kernel.shape[1] - 1]
        total = total + lax.conv_general_dilated(phase, sub_kernel, (1, 1), 'VALID',
                                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return total

  def space_to_depth(x, kernel):
    blocks, small = space_to_depth_operands(x, kernel)
    y = lax.conv_general_dilated(blocks, small, (1, 1), 'VALID',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y[:, :x.shape[1] // 2, :x.shape[2] // 2]

  def winograd(x, kernel):
    blocks, small = space_to_depth_operands(x, kernel)
    return winograd_conv3x3(blocks, small, x.shape[1] // 2, x.shape[2] // 2)

  def im2col(x, kernel):
    patches = jnp.concatenate([part for row in range(5) for part in tap_windows(x, row)], -1)
    return jnp.einsum('bhwk,ko->bhwo', patches, kernel.reshape(-1, kernel.shape[-1]))

  def rows_of_taps(x, kernel):
    return sum(jnp.einsum('bhwk,ko->bhwo', jnp.concatenate(tap_windows(x, row), -1),
                          kernel[row].reshape(-1, kernel.shape[-1])) for row in range(5))

  return {'phase_convs': phase_convs, 'space_to_depth': space_to_depth,
          'winograd': winograd, 'im2col': im2col, 'rows_of_taps': rows_of_taps}


def kernel_gradient_forms():
  """The stride-2, 5x5 kernel gradient rewritten, each (x [B, H, W, C], g [B, H/2, W/2, O]) ->
  [5, 5, C, O]."""
  import jax
  import jax.numpy as jnp

  from vaegan_jax.model import cpu_convolutions

  def phases(x, height, width):
    """The padded input's four (row, column) parities, each [B, height + 2, width + 2, C]."""
    padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    # The barrier keeps XLA from merging each window's slice with its phase's into one strided
    # slice again.
    return jax.lax.optimization_barrier(
        [[padded[:, r::2, s::2][:, :height + 2, :width + 2] for s in (0, 1)] for r in (0, 1)])

  def phase_windows(x, g):
    height, width, outputs = g.shape[1:]
    parts, cotangent = phases(x, height, width), g.reshape(-1, outputs)
    taps = [parts[a % 2][b % 2][:, a // 2:a // 2 + height, b // 2:b // 2 + width]
            for a in range(5) for b in range(5)]
    return jnp.stack([jnp.dot(tap.reshape(-1, x.shape[-1]).T, cotangent)
                      for tap in taps]).reshape(5, 5, x.shape[-1], outputs)

  def im2col(x, g):
    columns = jnp.concatenate([part for row in range(5) for part in tap_windows(x, row)], -1)
    return jnp.dot(columns.reshape(-1, 25 * x.shape[-1]).T,
                   g.reshape(-1, g.shape[-1])).reshape(5, 5, x.shape[-1], g.shape[-1])

  def flat_rows(x, g):
    # Flattened with the phase's width, tap (a, b)'s window is rows [offset, offset + M) of its
    # phase, offset = (a // 2) * (W + 2) + b // 2, once the cotangent is zero-padded to that width.
    height, width, outputs = g.shape[1:]
    cotangent = jnp.pad(g, ((0, 0), (0, 2), (0, 2), (0, 0))).reshape(-1, outputs)
    rows = cotangent.shape[0]
    flat = [[jnp.pad(part.reshape(rows, -1), ((0, 2 * (width + 2) + 2), (0, 0))) for part in pair]
            for pair in phases(x, height, width)]
    taps = []
    for a in range(5):
      for b in range(5):
        offset = (a // 2) * (width + 2) + b // 2
        taps.append(jnp.dot(flat[a % 2][b % 2][offset:offset + rows].T, cotangent))
    return jnp.stack(taps).reshape(5, 5, x.shape[-1], outputs)

  def per_tap(x, g):
    return cpu_convolutions._stride2_conv_kernel_gradient(x, g, (5, 5, x.shape[-1], g.shape[-1]), 'matmul')

  def xla(x, g):
    return cpu_convolutions._stride2_conv_kernel_gradient(x, g, (5, 5, x.shape[-1], g.shape[-1]), 'xla')

  return {'xla': xla, 'matmul': per_tap, 'phase_windows': phase_windows, 'im2col': im2col,
          'flat_rows': flat_rows}


def assert_close(actual, expected, form: str) -> None:
  """Equal up to float32 rounding at the result's scale: a kernel gradient sums B * H/2 * W/2
  products per element, and Winograd's transforms (coefficients up to 8 and down to 1/24) lose a
  few more bits than a direct sum."""
  import numpy as np

  np.testing.assert_allclose(actual, expected, rtol=1e-4,
                             atol=5e-5 * float(np.abs(expected).max()), err_msg=form)


def time_jax(shapes, batch: int, repeats: int, forms: bool) -> list[dict]:
  import jax
  import numpy as np

  from vaegan_jax.model import convolution, cpu_convolutions

  rng = np.random.default_rng(0)
  results = []
  for name, height, width, inputs, outputs, kind in shapes:
    x = jax.numpy.asarray(rng.standard_normal((batch, height, width, inputs)), jax.numpy.float32)
    shape = (5, 5, outputs, inputs) if kind == 't' else (5, 5, inputs, outputs)
    kernel = jax.numpy.asarray(0.05 * rng.standard_normal(shape), jax.numpy.float32)
    row = {'layer': name, 'shape': [batch, height, width, inputs, outputs], 'kind': kind}
    for gradients in ('phases', 'matmul', 'xla'):
      conv = {'s2': lambda x, k: cpu_convolutions.strided_conv2d(x, k, gradients),
              's1': lambda x, k: cpu_convolutions.stride1_conv2d(x, k, gradients),
              't': lambda x, k: cpu_convolutions.conv_transpose2d(x, k, gradients)}[kind]
      forward = jax.jit(conv)
      cotangent = jax.numpy.ones_like(forward(x, kernel))
      both = jax.jit(lambda x, k, g, conv=conv: jax.vjp(conv, x, k)[1](g))
      row[f'{gradients}_forward_ms'] = best_ms(
          lambda: jax.block_until_ready(forward(x, kernel)), repeats)
      row[f'{gradients}_gradients_ms'] = best_ms(
          lambda: jax.block_until_ready(both(x, kernel, cotangent)), repeats)
    if forms and kind == 's2':
      reference = convolution.conv2d(x, kernel, 2)
      for form, function in strided_forms().items():
        compiled = jax.jit(function)
        assert_close(compiled(x, kernel), reference, form)
        row[f'{form}_forward_ms'] = best_ms(
            lambda: jax.block_until_ready(compiled(x, kernel)), repeats)
      cotangent = jax.numpy.asarray(rng.standard_normal(reference.shape), jax.numpy.float32)
      expected = cpu_convolutions._stride2_conv_kernel_gradient(x, cotangent, kernel.shape, 'xla')
      for form, function in kernel_gradient_forms().items():
        compiled = jax.jit(function)
        assert_close(compiled(x, cotangent), expected, form)
        row[f'{form}_kernel_gradient_ms'] = best_ms(
            lambda: jax.block_until_ready(compiled(x, cotangent)), repeats)
    results.append(row)
  return results


# ---------------------------------------------------------------- PyTorch
def time_torch(shapes, batch: int, repeats: int) -> list[dict]:
  import torch
  import torch.nn.functional as F

  torch.manual_seed(0)
  results = []
  for name, height, width, inputs, outputs, kind in shapes:
    x = torch.randn(batch, inputs, height, width).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    if kind == 't':
      kernel = (0.05 * torch.randn(inputs, outputs, 5, 5)).requires_grad_()
      conv = lambda: F.conv_transpose2d(x, kernel, stride=2, padding=2, output_padding=1)
    else:
      kernel = (0.05 * torch.randn(outputs, inputs, 5, 5)).contiguous(
          memory_format=torch.channels_last).requires_grad_()
      conv = lambda: F.conv2d(x, kernel, stride=2 if kind == 's2' else 1, padding=2)
    cotangent = torch.ones_like(conv())

    def forward():
      with torch.no_grad():
        conv()

    def both():
      torch.autograd.grad(conv(), (x, kernel), cotangent)

    forward_ms, both_ms = best_ms(forward, repeats), best_ms(both, repeats)
    results.append({'layer': name, 'shape': [batch, height, width, inputs, outputs],
                    'kind': kind, 'torch_forward_ms': forward_ms,
                    'torch_gradients_ms': both_ms - forward_ms})   # less the forward it reruns
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=['jax', 'torch'], default='jax')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=4)
  parser.add_argument('--forms', action='store_true', help='JAX: the strided-forward rewrites')
  parser.add_argument('--smoke', action='store_true', help='tiny shapes, one repeat')
  args = parser.parse_args()
  shapes, batch, repeats = ((SMOKE_LAYERS, 2, 1) if args.smoke else
                            (LAYERS, args.batch, args.repeats))
  results = (time_torch(shapes, batch, repeats) if args.framework == 'torch' else
             time_jax(shapes, batch, repeats, args.forms))
  for row in results:
    print(f'{row["layer"]:22s} ' + ' '.join(f'{key.removesuffix("_ms")} {value:.1f}'
                                            for key, value in row.items() if key.endswith('_ms')),
          flush=True)
  print(json.dumps({'framework': args.framework, 'batch': batch, 'smoke': args.smoke,
                    'layers': results}))


if __name__ == '__main__':
  main()
