"""Conv geometry (padding 2 on every side), the transposed conv, and its custom VJP."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaegan_jax.model import convolution, cpu_convolutions, layers


def centre_impulse_kernel(channels_in=1, channels_out=1, size=5):
  kernel = np.zeros((size, size, channels_in, channels_out), np.float32)
  kernel[size // 2, size // 2] = 1.0
  return jnp.asarray(kernel)


def impulse_image(size, row, col):
  image = np.zeros((1, size, size, 1), np.float32)
  image[0, row, col, 0] = 1.0
  return jnp.asarray(image)


def test_stride2_conv_keeps_a_centred_impulse_centred():
  out = convolution.conv2d(impulse_image(16, 8, 8), centre_impulse_kernel(), stride=2)
  expected = np.zeros((1, 8, 8, 1), np.float32)
  expected[0, 4, 4, 0] = 1.0
  np.testing.assert_array_equal(out, expected)
  # XLA's 'SAME' pads (1, 2) here and would sample odd pixels: the impulse would vanish.
  same = jax.lax.conv_general_dilated(impulse_image(16, 8, 8), centre_impulse_kernel(), (2, 2),
                                      'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert float(jnp.abs(same).sum()) == 0.0


def test_transposed_conv_maps_a_centred_impulse_to_the_centre():
  out = cpu_convolutions.conv_transpose2d(impulse_image(8, 4, 4), centre_impulse_kernel())
  expected = np.zeros((1, 16, 16, 1), np.float32)
  expected[0, 8, 8, 0] = 1.0
  np.testing.assert_array_equal(out, expected)


def torch_conv_transpose_reference(x, torch_weight, stride=2, padding=2, output_padding=1):
  """PyTorch's ConvTranspose2d by its definition: y[i*s - p + a] += x[i] * w[a] (numpy loops)."""
  batch, height, width, _ = x.shape
  channels_in, channels_out, k, _ = torch_weight.shape
  out_size = (height - 1) * stride - 2 * padding + k + output_padding
  y = np.zeros((batch, out_size, out_size, channels_out))
  for i in range(height):
    for j in range(width):
      for a in range(k):
        for b in range(k):
          row, col = i * stride - padding + a, j * stride - padding + b
          if 0 <= row < out_size and 0 <= col < out_size:
            y[:, row, col, :] += x[:, i, j, :] @ torch_weight[:, :, a, b]
  return y


def test_transposed_conv_equals_pytorch_convtranspose2d_k5_s2_p2_op1():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 4, 4, 3))
  torch_weight = rng.normal(size=(3, 2, 5, 5))            # [C_in, C_out, k, k]
  kernel = jnp.asarray(torch_weight.transpose(2, 3, 1, 0), jnp.float32)  # [k, k, C_out, C_in]
  ours = cpu_convolutions.conv_transpose2d(jnp.asarray(x, jnp.float32), kernel)
  assert ours.shape == (2, 8, 8, 2)
  np.testing.assert_allclose(ours, torch_conv_transpose_reference(x, torch_weight),
                             rtol=1e-5, atol=1e-5)


def plain_adjoint(x, kernel):
  """The transposed conv by JAX's own transpose of the strided conv: the autodiff reference."""
  shape = (x.shape[0], 2 * x.shape[1], 2 * x.shape[2], kernel.shape[2])
  (result,) = jax.linear_transpose(lambda u: convolution.conv2d(u, kernel, 2),
                                   jax.ShapeDtypeStruct(shape, x.dtype))(x)
  return result


@pytest.mark.parametrize('size', [3, 5, 7])
def test_adjoint_by_phases_is_the_transpose_of_the_strided_conv(size):
  """Each phase conv's taps and padding give exactly its own outputs, for any odd kernel size and
  on a map that is not square."""
  keys = jax.random.split(jax.random.key(3), 2)
  y = jax.random.normal(keys[0], (2, 3, 5, 4))
  kernel = jax.random.normal(keys[1], (size, size, 2, 4))
  ours = cpu_convolutions._stride2_conv_adjoint(y, kernel, 'phases')
  assert ours.shape == (2, 6, 10, 2)
  np.testing.assert_allclose(ours, plain_adjoint(y, kernel), rtol=1e-5, atol=1e-5)


def assert_matches_autodiff(ours, plain, x, kernel, cotangent, forward_atol, gradient_atol):
  """ours(x, kernel) equals plain(x, kernel), and so do both gradients of <., cotangent>."""
  np.testing.assert_allclose(ours(x, kernel), plain(x, kernel), rtol=1e-5, atol=forward_atol)
  objective = lambda fn: (lambda x, k: jnp.sum(fn(x, k) * cotangent))
  got = jax.grad(objective(ours), argnums=(0, 1))(x, kernel)
  want = jax.grad(objective(plain), argnums=(0, 1))(x, kernel)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=gradient_atol)


@pytest.mark.parametrize('gradients', ['xla', 'phases', 'matmul'])
@pytest.mark.parametrize('op', ['stride1_conv', 'strided_conv', 'conv_transpose'])
def test_custom_vjps_match_autodiff_of_the_plain_ops(op, gradients):
  keys = jax.random.split(jax.random.key(1), 3)
  if op == 'stride1_conv':
    # The input comes through a ReLU, so that XLA has a producer to fuse or to keep apart.
    ours = lambda x, k: cpu_convolutions.stride1_conv2d(jax.nn.relu(x), k, gradients)
    plain = lambda x, k: convolution.conv2d(jax.nn.relu(x), k, 1)
    x_shape, kernel_shape, out_shape = (2, 8, 8, 3), (5, 5, 3, 4), (2, 8, 8, 4)
  elif op == 'strided_conv':
    ours = lambda x, k: cpu_convolutions.strided_conv2d(x, k, gradients)
    plain = lambda x, k: convolution.conv2d(x, k, 2)
    x_shape, kernel_shape, out_shape = (2, 8, 8, 3), (5, 5, 3, 4), (2, 4, 4, 4)
  else:
    ours = lambda x, k: cpu_convolutions.conv_transpose2d(x, k, gradients)
    plain = plain_adjoint
    x_shape, kernel_shape, out_shape = (2, 4, 4, 3), (5, 5, 2, 3), (2, 8, 8, 2)
  x = jax.random.normal(keys[0], x_shape)
  kernel = jax.random.normal(keys[1], kernel_shape)
  cotangent = jax.random.normal(keys[2], out_shape)
  assert_matches_autodiff(ours, plain, x, kernel, cotangent, forward_atol=1e-5,
                          gradient_atol=1e-4)


@pytest.mark.parametrize('size, channels_in, channels_out, forward_by_rows, input_gradient_by_rows',
                         [(3, 6, 1, True, False), (5, 32, 3, True, False), (7, 2, 4, True, True),
                          (5, 3, 8, False, True)])
def test_stride1_conv_to_few_channels_runs_by_rows_and_matches_the_plain_conv(
    size, channels_in, channels_out, forward_by_rows, input_gradient_by_rows):
  """Forward and both gradients against autodiff of conv2d on a map that is not square. A conv
  to at most 4 channels runs as a 1 x k conv (to 8 it stays XLA's k x k), and so does the input
  gradient of a conv from at most 4."""
  keys = jax.random.split(jax.random.key(4), 3)
  x = jax.random.normal(keys[0], (2, 6, 9, channels_in))
  kernel = jax.random.normal(keys[1], (size, size, channels_in, channels_out))
  cotangent = jax.random.normal(keys[2], (2, 6, 9, channels_out))
  ours = lambda x, k: cpu_convolutions.stride1_conv2d(x, k, 'phases')
  plain = lambda x, k: convolution.conv2d(x, k, 1)
  assert_matches_autodiff(ours, plain, x, kernel, cotangent, forward_atol=1e-4,
                          gradient_atol=1e-3)
  objective = lambda fn: (lambda x, k: jnp.sum(fn(x, k) * cotangent))
  forward_hlo = jax.jit(ours).lower(x, kernel).compile().as_text()
  assert (f'size=1x{size} ' in forward_hlo) == forward_by_rows
  input_gradient_hlo = jax.jit(jax.grad(objective(ours))).lower(x, kernel).compile().as_text()
  assert (f'size=1x{size} ' in input_gradient_hlo) == input_gradient_by_rows


def test_stride1_conv_by_rows_in_bfloat16_sums_its_rows_in_float32():
  keys = jax.random.split(jax.random.key(5), 2)
  x = jax.random.normal(keys[0], (2, 8, 8, 32))
  kernel = jax.random.normal(keys[1], (5, 5, 32, 3)) * 0.05
  ours = cpu_convolutions.stride1_conv2d(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), 'phases')
  assert ours.dtype == jnp.bfloat16
  reference = convolution.conv2d(x.astype(jnp.bfloat16).astype(jnp.float32),
                            kernel.astype(jnp.bfloat16).astype(jnp.float32), 1)
  # Rounded once to bfloat16 (8 bits of mantissa), not after each of the five row sums.
  np.testing.assert_allclose(ours.astype(jnp.float32), reference, rtol=2 ** -8, atol=2 ** -8)


@pytest.mark.parametrize('first', [0.5, jnp.nan, jnp.inf])
def test_materialised_is_the_identity_whichever_branch_runs(first):
  x = jax.random.normal(jax.random.key(2), (2, 3, 3, 2)).at[0, 0, 0, 0].set(first)
  np.testing.assert_array_equal(jax.jit(cpu_convolutions.materialised)(x), x)


@pytest.mark.parametrize('conv, kernel_shape, materialised_under', [
    (cpu_convolutions.stride1_conv2d, (5, 5, 3, 4), {'phases', 'matmul'}),
    (cpu_convolutions.strided_conv2d, (5, 5, 3, 4), {'phases'}),   # 'matmul' cuts windows through the fusion
    (cpu_convolutions.conv_transpose2d, (5, 5, 4, 3), {'phases', 'matmul'}),
])
def test_kernel_gradient_reads_a_materialised_input_on_the_cpus_paths(conv, kernel_shape,
                                                                      materialised_under):
  """The conditional that keeps the input a buffer of its own survives XLA's optimisations
  (were it simplified away, the CPU would lose the speed it is there for, and nothing else
  would say so)."""
  x, kernel = jnp.ones((2, 8, 8, 3)), jnp.ones(kernel_shape)
  def kernel_gradient(gradients):
    loss = lambda k, x: jnp.sum(conv(jax.nn.relu(x * 2.0), k, gradients))
    return jax.jit(jax.grad(loss)).lower(kernel, x).compile().as_text()
  for gradients in ('phases', 'matmul', 'xla'):
    assert ('conditional' in kernel_gradient(gradients)) == (gradients in materialised_under)


def test_conv_rejects_a_stride_other_than_1_or_2():
  with pytest.raises(ValueError, match='stride 3; use 1 or 2'):
    layers.Conv(4, stride=3).init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))


@pytest.mark.parametrize('fan_in', [75, 6400])
def test_fan_in_uniform_init_bounds(fan_in):
  values = layers.fan_in_uniform(fan_in)(jax.random.key(0), (200, 50))
  limit = 1.0 / np.sqrt(3.0 * fan_in)
  assert float(jnp.max(jnp.abs(values))) <= limit
  assert float(jnp.max(jnp.abs(values))) > 0.95 * limit   # fills the whole range


def power_iterations(layer, x, variables, count):
  """`count` train-mode applications, each keeping the batch statistics it updates."""
  for _ in range(count):
    _, updates = layer.apply(variables, x, mutable=['batch_stats'])
    variables = {**variables, 'batch_stats': updates['batch_stats']}
  return variables


def test_spectral_norm_makes_the_largest_singular_value_one_after_its_power_iterations():
  dense = layers.Dense(6, use_bias=False, spectral_norm=True)
  identity = jnp.eye(10)                     # the layer's output is then its kernel
  variables = dense.init(jax.random.key(0), identity)
  raw = np.asarray(variables['params']['kernel'])
  assert np.linalg.svd(np.asarray(dense.apply(variables, identity)), compute_uv=False)[0] != (
      pytest.approx(1.0, abs=1e-3))          # one iteration from u's start is not there yet
  variables = power_iterations(dense, identity, variables, 50)
  used = np.asarray(dense.apply(variables, identity))          # eval: u only read
  assert np.linalg.svd(used, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-4)
  np.testing.assert_allclose(used * np.linalg.svd(raw, compute_uv=False)[0], raw, rtol=1e-4)
  # A conv divides its kernel by the top singular value of the kernel as [k * k * C_in, C_out].
  conv = layers.Conv(4, stride=2, use_bias=False, spectral_norm=True)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  variables = power_iterations(conv, x, conv.init(jax.random.key(2), x), 50)
  kernel = np.asarray(variables['params']['kernel'])
  sigma = np.linalg.svd(kernel.reshape(-1, 4), compute_uv=False)[0]
  np.testing.assert_allclose(conv.apply(variables, x), convolution.conv2d(x, kernel / sigma, 2),
                             rtol=1e-4, atol=1e-5)
