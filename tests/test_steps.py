"""The train step: gradient routing, N devices = 1 device, gating, stability, and learning."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build, build_from, tiny_config

from vaegan_jax import losses, steps
from vaegan_jax.sharding import DEVICE_AXIS

BATCH = 16


def images(seed=0, shape=(BATCH, 16, 16, 3)):
  return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


def assert_trees_close(got, want, rtol=2e-4, atol=1e-5):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def conditions(config, seed=0, batch=BATCH):
  """Random attributes y in {-1, +1} for a conditional config, else None."""
  count = len(config.model.condition_on)
  if not count:
    return None
  return jnp.where(jax.random.bernoulli(jax.random.key(100 + seed), 0.5, (batch, count)), 1., -1.)


def reference_losses(config, networks, state, x, y=None):
  """All loss terms as plain functions of the three networks' params, written out by hand; a
  conditional model sees y with every copy of the batch (Enc(x, y), Dec([z; zp], [y; y]), ...)."""
  batch, loss = x.shape[0], config.loss
  step_key = jax.random.fold_in(state.rng, state.step)
  ids = jnp.arange(batch)
  prior_z = steps.per_example_normal(jax.random.fold_in(step_key, 0), ids, config.model.latent_dim)
  noise = steps.per_example_normal(jax.random.fold_in(step_key, 1), ids, config.model.latent_dim)

  def apply(name, params, inputs):
    network = getattr(state, name)
    condition = None if y is None else jnp.tile(y, (inputs.shape[0] // batch, 1))
    out, _ = getattr(networks, name).apply({'params': params, 'batch_stats': network.batch_stats},
                                           inputs, train=True, condition=condition,
                                           mutable=['batch_stats'])
    return out

  def terms(encoder_params, decoder_params, discriminator_params):
    result = {}
    latents = prior_z
    if networks.encoder is not None:
      mu, log_variance = apply('encoder', encoder_params, x)
      result['prior'] = -0.5 * jnp.sum(1 + log_variance - mu**2 - jnp.exp(log_variance))
      latents = jnp.concatenate([mu + noise * jnp.exp(0.5 * log_variance), prior_z])
    fakes = apply('decoder', decoder_params, latents)
    if config.model.kind == 'vae':
      result['pixel'] = 0.5 * jnp.sum((fakes[:batch] - x) ** 2)
      return result
    logits, features = apply('discriminator', discriminator_params,
                             jnp.concatenate([x, fakes]))
    if networks.encoder is not None:
      layer = features[loss.feature_layer]
      result['llike'] = 0.5 * jnp.sum((layer[batch:2 * batch]
                                       - jax.lax.stop_gradient(layer[:batch])) ** 2)
    d = jax.nn.sigmoid(logits)
    real_d, fake_d = d[:batch], d[batch:]
    if networks.encoder is not None and loss.fakes == 'prior':
      fake_d = fake_d[batch:]
    eps = loss.gan_eps if loss.gan_form == 'eps' else 0.0
    result['discriminator'] = (-loss.real_weight * jnp.sum(jnp.log(real_d + eps))
                               - loss.fake_weight * jnp.sum(jnp.log(1 - fake_d + eps)))
    if loss.decoder_gan == 'saturating':   # -L_GAN of Algorithm 1, unweighted, real term included
      result['decoder_gan'] = jnp.sum(jnp.log(real_d + eps)) + jnp.sum(jnp.log(1 - fake_d + eps))
    else:
      result['decoder_gan'] = -jnp.sum(jnp.log(fake_d + eps))
    return result

  return terms


def step_gradients(config, networks, state, x, y=None):
  gradients, _, _, _ = steps.compute_gradients(state, x, y, config=config, networks=networks,
                                               axis_name=None)
  return gradients


def network_params(state):
  return tuple(None if getattr(state, name) is None else getattr(state, name).params
               for name in ('encoder', 'decoder', 'discriminator'))


def grad_of(terms, params, argnum, combine):
  return jax.grad(lambda *p: combine(terms(*p)), argnums=argnum)(*params)


ROUTING_CASES = [
    ('vaegan', dict(gamma=0.5)),
    ('vaegan', dict(gamma=0.5, real_weight=0.5, fake_weight=0.5)),   # shares the Dis chain
    ('vaegan', dict(gamma=0.5, fakes='prior', decoder_gan='non_saturating', gan_form='eps',
                    real_weight=0.5, fake_weight=0.5)),
    ('vae_disl', {}),
    ('vae', {}),
    ('gan', {}),
    ('gan', dict(real_weight=0.3, fake_weight=0.3)),
    ('vaegan,conditional', dict(gamma=0.5)),
    ('vae,conditional', {}),
    ('gan,conditional', {}),
]


@pytest.mark.parametrize('kind,loss_overrides', ROUTING_CASES)
def test_each_network_gets_the_gradient_of_its_own_objective_alone(kind, loss_overrides):
  config, networks, _, state = build(kind, **loss_overrides)
  x, y = images(), conditions(config)
  got = step_gradients(config, networks, state, x, y)
  terms = reference_losses(config, networks, state, x, y)
  params = network_params(state)
  gamma = config.loss.gamma
  expected = {
      'vaegan': dict(encoder=lambda t: t['prior'] + t['llike'],
                     decoder=lambda t: gamma * t['llike'] + t['decoder_gan'],
                     discriminator=lambda t: t['discriminator']),
      'vae_disl': dict(encoder=lambda t: t['prior'] + t['llike'],
                       decoder=lambda t: t['llike'],
                       discriminator=lambda t: t['discriminator']),
      'vae': dict(encoder=lambda t: t['prior'] + t['pixel'], decoder=lambda t: t['pixel']),
      'gan': dict(decoder=lambda t: t['decoder_gan'],
                  discriminator=lambda t: t['discriminator']),
  }[config.model.kind]
  assert set(got) == set(expected)
  argnums = {'encoder': 0, 'decoder': 1, 'discriminator': 2}
  for name, objective in expected.items():
    assert_trees_close(got[name], grad_of(terms, params, argnums[name], objective))

  if config.model.kind == 'vaegan':
    # The comparison can fail: a GAN gradient into the encoder, or an L_llike gradient into the
    # discriminator, would change these gradients by more than the tolerance.
    leaky_encoder = grad_of(terms, params, 0, lambda t: t['prior'] + t['llike'] + t['decoder_gan'])
    leaky_discriminator = grad_of(terms, params, 2, lambda t: t['discriminator'] + t['llike'])
    for name, leaky in (('encoder', leaky_encoder), ('discriminator', leaky_discriminator)):
      difference = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), got[name], leaky)
      assert max(jax.tree.leaves(difference)) > 1e-2


def run_pmapped(devices, steps_to_run=2, kind='vaegan'):
  config, networks, optimizers, state = build(kind, axis_name=DEVICE_AXIS)
  train_step = steps.make_pmapped_train_step(config, networks, optimizers, devices=devices)
  all_metrics = []
  for step in range(steps_to_run):
    x = images(seed=step).reshape(len(devices), BATCH // len(devices), 16, 16, 3)
    y = conditions(config, seed=step)
    y = None if y is None else y.reshape(len(devices), BATCH // len(devices), -1)
    state, metrics = train_step(state, x, y)
    all_metrics.append(metrics)
  return jax.device_get(state), jax.device_get(all_metrics)


@pytest.mark.parametrize('kind', ['vaegan', 'vae', 'vaegan,conditional'])
def test_eight_devices_make_the_same_update_as_one(kind):
  one_state, one_metrics = run_pmapped(jax.devices()[:1], kind=kind)
  eight_state, eight_metrics = run_pmapped(jax.devices()[:8], kind=kind)
  assert int(eight_state.step) == 2
  assert_trees_close(eight_state, one_state, rtol=1e-4, atol=2e-6)
  assert_trees_close(eight_metrics, one_metrics, rtol=1e-4, atol=1e-5)


def test_devices_draw_different_noise_from_the_same_key():
  key = jax.random.PRNGKey(0)
  noise = steps.per_example_normal(key, jnp.arange(4), 8)
  assert len({tuple(np.asarray(row).round(5)) for row in noise}) == 4


@pytest.mark.parametrize('real_bce,fake_bce,update_discriminator,update_decoder', [
    (0.69, 0.69, True, True),     # inside the band: both update
    (0.20, 0.69, False, True),    # discriminator too good on reals: skip it
    (0.69, 0.20, False, True),    # ... or on fakes
    (1.50, 0.69, True, False),    # discriminator losing on reals: skip the decoder
    (0.69, 1.50, True, False),    # ... or on fakes
    (0.10, 1.50, True, True),     # both would be skipped: both update
])
def test_equilibrium_gate_rule(real_bce, fake_bce, update_discriminator, update_decoder):
  update = steps.equilibrium_gate(jnp.array(real_bce), jnp.array(fake_bce), 0.68, 0.35)
  assert (bool(update[0]), bool(update[1])) == (update_discriminator, update_decoder)


def with_constant_logit(state, logit):
  """A discriminator whose logit is `logit` for every image (last layer zeroed, bias set)."""
  params = jax.tree.map(lambda x: x, state.discriminator.params)
  params['dense2'] = {'kernel': jnp.zeros_like(params['dense2']['kernel']),
                      'bias': jnp.full_like(params['dense2']['bias'], logit)}
  return state.replace(discriminator=state.discriminator.replace(params=params))


@pytest.mark.parametrize('logit,equilibrium,margin,skipped', [
    (0.0, 0.68, 0.35, ()),                                 # BCE = log 2 in the band
    (0.0, 0.20, 0.10, ('decoder',)),                        # log 2 > 0.3: decoder skipped
    (0.0, 1.20, 0.10, ('discriminator',)),                  # log 2 < 1.1: discriminator skipped
    (2.0, 0.68, 0.35, ()),                                  # real 0.13, fake 2.13: both update
])
def test_gated_step_keeps_exactly_the_skipped_network(logit, equilibrium, margin, skipped):
  config, networks, optimizers, state = build('vaegan', equilibrium=equilibrium, margin=margin)
  state = with_constant_logit(state, logit)
  train_step = jax.jit(functools.partial(steps.train_step, config=config, networks=networks,
                                         optimizers=optimizers, axis_name=None))
  new_state, metrics = train_step(state, images())
  for name in ('encoder', 'decoder', 'discriminator'):
    unchanged = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                             getattr(new_state, name).params, getattr(state, name).params)
    assert all(jax.tree.leaves(unchanged)) == (name in skipped), name
  assert float(metrics['skipped_decoder']) == float('decoder' in skipped)
  assert float(metrics['skipped_discriminator']) == float('discriminator' in skipped)


@pytest.mark.parametrize('gan_form', ['logit', 'eps'])
def test_no_nan_with_extreme_discriminator_logits(gan_form):
  config, networks, optimizers, state = build('vaegan', gan_form=gan_form)
  train_step = jax.jit(functools.partial(steps.train_step, config=config, networks=networks,
                                         optimizers=optimizers, axis_name=None))
  for logit in (-1e4, 1e4):
    new_state, metrics = train_step(with_constant_logit(state, logit), images())
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves((new_state, metrics)))


def smooth_images(seed, count=8):
  """Low-frequency images a tiny model can memorise: 4x4 noise resized to 16x16."""
  low = jax.random.uniform(jax.random.key(seed), (count, 4, 4, 3), minval=-1.0, maxval=1.0)
  return jax.image.resize(low, (count, 16, 16, 3), 'bilinear')


def train_on_one_batch(config, num_steps=300):
  """(first 10, last 10 step metrics averaged, eval pixel error before and after)."""
  config, networks, optimizers, state = build_from(config)
  train_step = jax.jit(functools.partial(steps.train_step, config=config, networks=networks,
                                         optimizers=optimizers, axis_name=None))
  eval_step = jax.jit(functools.partial(steps.eval_step, config=config, networks=networks,
                                        axis_name=None))
  x = smooth_images(seed=3)
  z = jnp.zeros((x.shape[0], config.model.latent_dim))
  pixel_before = float(eval_step(state, x, z)[1]['pixel_error'])
  history = []
  for _ in range(num_steps):
    state, metrics = train_step(state, x)
    history.append(jax.device_get(metrics))
  pixel_after = float(eval_step(state, x, z)[1]['pixel_error'])
  mean = lambda rows: {k: np.mean([row[k] for row in rows]) for k in rows[0]}
  return mean(history[:10]), mean(history[-10:]), pixel_before, pixel_after


def test_tiny_vae_overfits_one_batch():
  first, last, pixel_before, pixel_after = train_on_one_batch(
      tiny_config('vae', learning_rate=1e-3))
  assert last['pixel'] < 0.15 * first['pixel']       # measured: 82 -> 4.8
  assert pixel_after < 0.15 * pixel_before            # test-mode reconstructions: 76 -> 3.7


def test_tiny_vaegan_drives_the_feature_loss_down_against_a_fixed_discriminator():
  config = tiny_config('vaegan', learning_rate=1e-3, gamma=1.0, gating=False)
  # A frozen discriminator makes L_llike a fixed objective for the encoder and decoder.
  config.optimizer.discriminator.update(learning_rate=0.0, weight_decay=0.0)
  first, last, _, _ = train_on_one_batch(config)
  assert np.isfinite(last['llike'])
  assert last['llike'] < 0.65 * first['llike']       # measured: 7.9 -> 4.0


def test_bfloat16_compute_keeps_float32_state_and_matches_float32_losses():
  results = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config('vaegan')
    config.model.compute_dtype = dtype
    config, networks, optimizers, state = build_from(config)
    train_step = jax.jit(functools.partial(steps.train_step, config=config, networks=networks,
                                           optimizers=optimizers, axis_name=None))
    new_state, metrics = train_step(state, images())
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((new_state.encoder, new_state.decoder,
                                                      new_state.discriminator))
              if jnp.issubdtype(leaf.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype('float32')}, dtypes
    results[dtype] = metrics
  for name in ('prior', 'llike', 'discriminator', 'decoder_gan'):
    np.testing.assert_allclose(results['bfloat16'][name], results['float32'][name], rtol=0.05)


def test_pmapped_eval_step_on_eight_devices_equals_one_and_uses_mu():
  config, networks, _, state = build('vaegan', axis_name=DEVICE_AXIS)
  x = images()
  z = jax.random.normal(jax.random.key(5), (BATCH, config.model.latent_dim))
  outputs = {}
  for count in (1, 8):
    eval_step = steps.make_pmapped_eval_step(config, networks, devices=jax.devices()[:count])
    outputs[count] = jax.device_get(eval_step(
        state, x.reshape(count, -1, 16, 16, 3), z.reshape(count, -1, config.model.latent_dim),
        None))
  for name in ('reconstructions', 'samples'):
    np.testing.assert_allclose(outputs[8][0][name].reshape(BATCH, 16, 16, 3),
                               outputs[1][0][name].reshape(BATCH, 16, 16, 3), rtol=1e-5, atol=1e-6)
  for name in ('kl', 'pixel_error', 'feature_error', 'd_real', 'd_reconstruction', 'd_prior'):
    assert outputs[8][1][name].shape == ()
    np.testing.assert_allclose(outputs[8][1][name], outputs[1][1][name], rtol=1e-5)
  # Test time is deterministic: the encoder returns mu, and running statistics normalise.
  variables = lambda name: {'params': getattr(state, name).params,
                            'batch_stats': getattr(state, name).batch_stats}
  mu, _ = networks.encoder.apply(variables('encoder'), x, train=False)
  expected = networks.decoder.apply(variables('decoder'), mu, train=False)
  np.testing.assert_allclose(outputs[1][0]['reconstructions'][0], expected, rtol=1e-5, atol=1e-6)
