"""The paper's 64x64 networks: parameter counts, shapes at 32/64/128, layer names and errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaegan_jax.configs import celeba64, schema, tiny
from vaegan_jax.metrics import quality
from vaegan_jax.model import convolution, cpu_convolutions, models


def count(params):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def init(module, shape):
  return module.init(jax.random.key(0), jnp.zeros(shape), train=False)


def shapes(function, module, *args):
  """function(module, *args) evaluated abstractly (jax.eval_shape): shapes, nothing computed."""
  return jax.eval_shape(lambda: function(module, *args))


def paper_networks(resolution=64, variant=''):
  config = celeba64.get_config(f'{resolution},{variant}')
  return config, models.build_networks(config)


def test_parameter_counts_of_the_paper_networks_match_a_hand_count():
  _, networks = paper_networks(variant='paper')       # the paper's table: encoder hidden 2048
  bn = lambda channels: 2 * channels                       # scale and shift
  # Enc: three 5x5 stride-2 convs (no bias: BN follows), dense 2048, dense mu and logvar (bias).
  encoder = (5 * 5 * 3 * 64 + bn(64) + 5 * 5 * 64 * 128 + bn(128) + 5 * 5 * 128 * 256 + bn(256)
             + 8 * 8 * 256 * 2048 + bn(2048) + 2 * (2048 * 128 + 128))
  # The code's encoder (the default): hidden 1024.
  code_encoder = (5 * 5 * 3 * 64 + bn(64) + 5 * 5 * 64 * 128 + bn(128) + 5 * 5 * 128 * 256
                  + bn(256) + 8 * 8 * 256 * 1024 + bn(1024) + 2 * (1024 * 128 + 128))
  assert count(shapes(init, paper_networks()[1].encoder, (1, 64, 64, 3))[
      'params']) == code_encoder
  # Dec: dense to 8x8x256, ups to 256, 128, 32 channels, 5x5 conv to 3 channels with bias.
  decoder = (128 * 8 * 8 * 256 + bn(8 * 8 * 256) + 5 * 5 * 256 * 256 + bn(256)
             + 5 * 5 * 256 * 128 + bn(128) + 5 * 5 * 128 * 32 + bn(32) + 5 * 5 * 32 * 3 + 3)
  # Dis: conv 32 with bias and no BN, convs 128, 256, 256, dense 512, dense 1 with bias.
  discriminator = (5 * 5 * 3 * 32 + 32 + 5 * 5 * 32 * 128 + bn(128) + 5 * 5 * 128 * 256 + bn(256)
                   + 5 * 5 * 256 * 256 + bn(256) + 8 * 8 * 256 * 512 + bn(512) + 512 + 1)
  assert count(shapes(init, networks.encoder, (1, 64, 64, 3))['params']) == encoder == 35_112_768
  assert count(shapes(init, networks.decoder, (1, 128))['params']) == decoder == 4_693_155
  assert count(shapes(init, networks.discriminator, (1, 64, 64, 3))[
      'params']) == discriminator == 10_953_857


@pytest.mark.parametrize('resolution', [32, 64, 128])
def test_output_shapes(resolution):
  config, networks = paper_networks(resolution)
  batch = 2
  image = jnp.zeros((batch, resolution, resolution, 3))
  latent = jnp.zeros((batch, 128))
  applied = lambda module, x: module.apply(init(module, x.shape), x, train=False)
  mu, log_variance = shapes(applied, networks.encoder, image)
  assert mu.shape == log_variance.shape == (batch, 128)
  assert shapes(applied, networks.decoder, latent).shape == image.shape
  logits, features = shapes(applied, networks.discriminator, image)
  assert logits.shape == (batch,)
  assert tuple(features) == schema.discriminator_layer_names(len(
      config.model.discriminator_channels))
  assert features['conv1'].shape == (batch, resolution, resolution, 32)
  last_conv = f'conv{len(config.model.discriminator_channels)}'
  assert features[last_conv].shape == (batch, 8, 8, 256)


def test_paper_feature_layer_is_the_fourth_conv_before_batch_norm():
  _, networks = paper_networks()
  image = jax.random.normal(jax.random.key(1), (4, 64, 64, 3))
  variables = init(networks.discriminator, image.shape)
  _, features = networks.discriminator.apply(variables, image, train=True, mutable=['batch_stats'])[0]
  conv4 = features['conv4']
  assert conv4.shape == (4, 8, 8, 256)
  # Before BN: the batch is not normalised (after BN every channel would have mean ~0, std ~1).
  assert float(jnp.abs(jnp.std(conv4, axis=(0, 1, 2)) - 1.0).mean()) > 0.5


def conditional_networks():
  config = tiny.get_config('vaegan,conditional')
  return config, models.build_networks(config)


def test_conditional_networks_take_y_where_models_py_says():
  config, networks = conditional_networks()
  model, attributes = config.model, len(config.model.condition_on)
  image, latent = jnp.zeros((2, 16, 16, 3)), jnp.zeros((2, model.latent_dim))
  y = jnp.ones((2, attributes))
  init_with_y = lambda module, x: module.init(jax.random.key(0), x, train=False, condition=y)
  # The dense layers' fan-in grows by A: the decoder's input, and the hidden dense layer of the
  # encoder and discriminator after their flattened conv features.
  encoder = init_with_y(networks.encoder, image)['params']
  decoder = init_with_y(networks.decoder, latent)['params']
  discriminator = init_with_y(networks.discriminator, image)['params']
  assert decoder['dense1']['kernel'].shape[0] == model.latent_dim + attributes
  assert encoder['dense1']['kernel'].shape[0] == 4 * 4 * 16 + attributes
  assert discriminator['dense1']['kernel'].shape[0] == 4 * 4 * 16 + attributes

  x = jax.random.uniform(jax.random.key(1), image.shape, minval=-1, maxval=1)
  flipped = y.at[:, 1].set(-1.0)
  for module, params, inputs in ((networks.encoder, encoder, x), (networks.decoder, decoder,
                                                                  latent + 0.5)):
    variables = module.init(jax.random.key(0), inputs, train=False, condition=y)
    one = module.apply(variables, inputs, train=False, condition=y)
    other = module.apply(variables, inputs, train=False, condition=flipped)
    assert jnp.max(jnp.abs(jnp.asarray(jax.tree.leaves(one)[0]) -
                           jnp.asarray(jax.tree.leaves(other)[0]))) > 1e-5
  variables = networks.discriminator.init(jax.random.key(0), x, train=False, condition=y)
  logit, features = networks.discriminator.apply(variables, x, train=False, condition=y)
  logit_flipped, features_flipped = networks.discriminator.apply(variables, x, train=False,
                                                                 condition=flipped)
  assert jnp.max(jnp.abs(logit - logit_flipped)) > 1e-5                   # D judges (x, y)
  np.testing.assert_array_equal(features[config.loss.feature_layer],    # Dis_l is y-free
                                features_flipped[config.loss.feature_layer])


def test_condition_of_the_wrong_kind_is_refused():
  config, networks = conditional_networks()
  latent = jnp.zeros((2, config.model.latent_dim))
  with pytest.raises(ValueError, match=r'Decoder is conditioned on 4 attributes: it needs a '
                                       r'condition of shape \(2, 4\).*got None'):
    networks.decoder.init(jax.random.key(0), latent, train=False)
  with pytest.raises(ValueError, match=r'got \(2, 3\)'):
    networks.decoder.init(jax.random.key(0), latent, train=False, condition=jnp.zeros((2, 3)))
  unconditional = models.build_networks(tiny.get_config('vaegan'))
  with pytest.raises(ValueError, match='Decoder is unconditional'):
    unconditional.decoder.init(jax.random.key(0), latent, train=False,
                               condition=jnp.zeros((2, 4)))


def test_transposed_conv_init_bounds_use_deeppys_fan_in_of_the_output_channels():
  # DeepPy's BackwardConvolution weights are [C_in, C_out, k, k], and its AutoFiller bounds
  # them by 1 / sqrt(3 * C_out * k * k): for 256 -> 128 and 128 -> 32 that is sqrt(2) and
  # 2 times the bound an input fan-in would give.
  _, networks = paper_networks()
  params = init(networks.decoder, (1, 128))['params']
  for name, (c_in, c_out) in {'up1': (256, 256), 'up2': (256, 128), 'up3': (128, 32)}.items():
    kernel = params[name]['kernel']
    assert kernel.shape == (5, 5, c_out, c_in)
    limit = 1 / np.sqrt(3 * 25 * c_out)
    assert 0.95 * limit < float(jnp.max(jnp.abs(kernel))) <= limit, name
  # Strided and stride-1 convs and dense layers keep the input fan-in.
  encoder = init(networks.encoder, (1, 64, 64, 3))['params']
  assert float(jnp.max(jnp.abs(encoder['conv2']['kernel']))) <= 1 / np.sqrt(3 * 25 * 64)
  assert float(jnp.max(jnp.abs(encoder['conv2']['kernel']))) > 0.95 / np.sqrt(3 * 25 * 64)


def test_resize_conv_upsampling_is_a_conv_of_the_pixels_repeated():
  """model.upsample='resize_conv' [ours]: each up layer is a stride-1 5x5 conv of the input with
  every pixel repeated 2 x 2 (no transposed conv, so no checkerboard of uneven overlaps)."""
  x = jnp.arange(2 * 2 * 3, dtype=jnp.float32).reshape(1, 2, 2, 3)
  repeated = models.nearest_upsample(x)
  assert repeated.shape == (1, 4, 4, 3)
  np.testing.assert_array_equal(repeated[0, :, :, 0], [[0, 0, 3, 3], [0, 0, 3, 3],
                                                       [6, 6, 9, 9], [6, 6, 9, 9]])
  config = tiny.get_config()
  config.model.upsample = 'resize_conv'
  schema.check(config)
  decoder = models.build_networks(config).decoder
  z = jax.random.normal(jax.random.key(0), (2, config.model.latent_dim))
  variables = decoder.init(jax.random.key(1), z, train=False)
  kernel = variables['params']['up1']['kernel']
  dense = config.model.decoder_dense_channels
  assert kernel.shape == (5, 5, dense, config.model.decoder_channels[0])   # HWIO, stride 1
  images = decoder.apply(variables, z, train=False)
  assert images.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.isfinite(images)))

  # The first up layer's output, recomputed by hand from the dense layer's.
  _, inner = decoder.apply(variables, z, train=False, capture_intermediates=True,
                           mutable=['intermediates'])
  before = inner['intermediates']['dense1_norm']['__call__'][0]
  start = config.model.resolution // 2 ** len(config.model.decoder_channels)
  h = jax.nn.relu(before).reshape(2, start, start, dense)
  by_hand = jax.lax.conv_general_dilated(models.nearest_upsample(h), kernel, (1, 1),
                                         ((2, 2), (2, 2)),
                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(inner['intermediates']['up1']['__call__'][0], by_hand, rtol=1e-5,
                             atol=1e-6)


def test_resize_conv_has_no_checkerboard_on_a_constant_input_where_the_transposed_conv_does():
  """Away from the padded borders, a constant map stays constant through resize-conv (zero power
  at the 2-pixel period), while the stride-2 transposed conv sums 9, 6, 6 or 4 kernel taps by
  output parity: a pure checkerboard (all its power at that period)."""
  constant = jnp.full((2, 8, 8, 4), 0.7, jnp.float32)
  kernel = jax.random.normal(jax.random.key(0), (5, 5, 4, 3))
  interior = lambda y: np.asarray(y)[:, 4:-4, 4:-4]               # [2, 8, 8, 3]
  resized = interior(convolution.conv2d(models.nearest_upsample(constant), kernel, 1))
  np.testing.assert_allclose(resized, np.broadcast_to(resized[:, :1, :1], resized.shape),
                             rtol=1e-6, atol=1e-6)
  transposed = interior(cpu_convolutions.conv_transpose2d(constant, kernel.transpose(0, 1, 3, 2), 'xla'))
  assert float(np.ptp(transposed.mean(-1))) > 0.1
  assert quality.nyquist_share(transposed) == pytest.approx(1.0)
