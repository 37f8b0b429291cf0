"""The train step: gradient routing, N devices = 1 device, gating, stability, and learning."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build, build_from, needs_eight_devices, tiny_config

from vaegan_jax.sharding import DEVICE_AXIS
from vaegan_jax.training import passes, steps

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


def noises(config, state, batch):
  """(prior z, posterior noise) of the step: the same draws the step makes."""
  step_key = jax.random.fold_in(state.rng, state.step)
  ids, size = jnp.arange(batch), config.model.latent_dim
  return (passes.per_example_normal(jax.random.fold_in(step_key, 0), ids, size),
          passes.per_example_normal(jax.random.fold_in(step_key, 1), ids, size))


def train_mode(networks, state, y, batch):
  """apply(name, params, inputs): one application in train mode, with y for every copy."""
  def apply(name, params, inputs):
    network = getattr(state, name)
    condition = None if y is None else jnp.tile(y, (inputs.shape[0] // batch, 1))
    out, _ = getattr(networks, name).apply({'params': params, 'batch_stats': network.batch_stats},
                                           inputs, train=True, condition=condition,
                                           mutable=['batch_stats'])
    return out
  return apply


def network_params(state):
  return tuple(None if getattr(state, name) is None else getattr(state, name).params
               for name in ('encoder', 'decoder', 'discriminator'))


def step_gradients(config, networks, state, x, y=None, **options):
  gradients, _, _, _ = steps.compute_gradients(state, x, y, config=config, networks=networks,
                                               axis_name=None, **options)
  return gradients


# ---------------------------------------------------------------- the authors' graph
@jax.custom_vjp
def scale_gradient(x, scale):
  """The authors' ScaleGradient (model/util.py): the identity, with the gradient times scale."""
  return x


scale_gradient.defvjp(lambda x, scale: (x, scale),
                      lambda scale, g: (g * scale, jnp.zeros_like(scale)))


def log_d(logits, real, config):
  """The code's log(d * sign + offset + eps): log D for reals, log(1 - D) for fakes."""
  if config.loss.gan_form == 'eps':
    d = jax.nn.sigmoid(logits)
    return jnp.log(jnp.where(real, d, 1 - d) + config.loss.gan_eps)
  return jax.nn.log_sigmoid(jnp.where(real, logits, -logits))


def authors_gradients(config, networks, state, x, y=None):
  """Each network's gradient as the authors' code computes it, transcribed without steps.py or
  passes.py: one scalar graph (model/aegan.py AEGAN.setup, or model/gan.py GAN.setup) with a
  parameter copy per application, ScaleGradient as a custom VJP, and WeightedParameter's
  weighting of the copies' gradients."""
  batch, loss, kind = x.shape[0], config.loss, config.model.kind
  prior_z, noise = noises(config, state, batch)
  apply = train_mode(networks, state, y, batch)
  enc, dec, dis = network_params(state)
  gan_rows = lambda fakes: jnp.arange(batch + len(fakes)) < batch          # True for reals

  if kind == 'gan':                                   # model/gan.py
    ratio = loss.gan_real_vs_gen_weight

    def graph(generator, discriminator):
      xs = jnp.concatenate([x, apply('decoder', generator, prior_z)])
      weights = jnp.where(gan_rows(prior_z), ratio, 1 - ratio)
      if ratio != 0.5:                                # the class scales only when r != 0.5
        xs = scale_gradient(xs, 1 / weights[:, None, None, None])
      logits, _ = apply('discriminator', discriminator, xs)
      if ratio != 0.5:
        logits = scale_gradient(logits, weights)
      return -jnp.sum(log_d(logits, gan_rows(prior_z), config))     # loss.grad_array = -1
    generator, discriminator = jax.grad(graph, argnums=(0, 1))(dec, dis)
    # generator.params = WeightedParameter(p, -1.0, 0.0)
    return {'decoder': jax.tree.map(lambda g: -g, generator), 'discriminator': discriminator}

  def encode(encoder):
    mu, log_variance = apply('encoder', encoder, x)
    kl = -0.5 * jnp.sum(1 + log_variance - mu**2 - jnp.exp(log_variance))
    return kl, mu + noise * jnp.exp(0.5 * log_variance)

  if kind == 'vae':                                   # Enc, Dec(z), the pixel-wise Gaussian
    def vae_graph(encoder, decoder):
      kl, z = encode(encoder)
      return kl + 0.5 * jnp.sum((apply('decoder', decoder, z) - x) ** 2)
    encoder, decoder = jax.grad(vae_graph, argnums=(0, 1))(enc, dec)
    return {'encoder': encoder, 'decoder': decoder}

  gamma = 1.0 if kind == 'vae_disl' else loss.gamma   # VAE_Dis_l: recon_vs_gan_weight = 1
  ratio = loss.real_vs_gen_weight

  def graph(encoder, decoder, decoder_neggrad, discriminator_recon, discriminator):
    kl, z = encode(encoder)
    x_tilde = apply('decoder', decoder, z)
    _, features = apply('discriminator', discriminator_recon, jnp.concatenate([x_tilde, x]))
    d_x_tilde, d_x = jnp.split(features[loss.feature_layer], 2)
    llike = 0.5 * jnp.sum((d_x_tilde - jax.lax.stop_gradient(d_x)) ** 2)
    z = scale_gradient(z, 0.0)                        # no GAN gradient into the encoder
    latents = prior_z if loss.fakes == 'prior' else jnp.concatenate([z, prior_z])
    xs = jnp.concatenate([x, apply('decoder', decoder_neggrad, latents)])
    gen_weight = (1 - ratio) * batch / len(latents)
    weights = jnp.where(gan_rows(latents), ratio, gen_weight)
    logits, _ = apply('discriminator', discriminator,
                      scale_gradient(xs, 1 / weights[:, None, None, None]))
    gan_loss = log_d(scale_gradient(logits, weights), gan_rows(latents), config)
    return kl + llike - jnp.sum(gan_loss)

  grads = jax.grad(graph, argnums=range(5))(enc, dec, dec, dis, dis)
  return {
      'encoder': grads[0],
      # decoder.params = WeightedParameter(p, gamma, -(1 - gamma)), shared with decoder_neggrad
      'decoder': jax.tree.map(lambda own, shared: gamma * own - (1 - gamma) * shared,
                              grads[1], grads[2]),
      # discriminator.params = WeightedParameter(p, 1.0, 0.0), shared with discriminator_recon
      'discriminator': jax.tree.map(lambda own, shared: 1.0 * own + 0.0 * shared,
                                    grads[4], grads[3]),
  }


AUTHORS_CASES = [
    ('vaegan', dict(gamma=0.3)),                                               # Feb
    ('vaegan', dict(gamma=0.3, fakes='prior', real_vs_gen_weight=0.5)),        # Mar
    ('vaegan', dict(gamma=0.3, gan_form='logit')),
    ('vae_disl', {}),
    ('vae', {}),
    ('gan', {}),                                      # the class default 0.5: unit weights
    ('gan', dict(gan_real_vs_gen_weight=0.3)),
    ('vaegan,conditional', dict(gamma=0.3)),
    ('gan,conditional', {}),
]


@pytest.mark.parametrize('kind,loss_overrides', AUTHORS_CASES)
def test_separate_passes_give_the_gradients_of_the_authors_graph(kind, loss_overrides):
  config, networks, _, state = build(kind, **loss_overrides)
  assert config.model.passes == 'separate'
  x, y = images(), conditions(config)
  got = step_gradients(config, networks, state, x, y)
  want = authors_gradients(config, networks, state, x, y)
  assert set(got) == set(want)
  for name in want:
    assert_trees_close(got[name], want[name])
  if config.model.kind in ('vaegan', 'vae'):
    # The comparison can fail: the joint passes (today's [ours] option) differ beyond it.
    config.model.passes = 'joint'
    joint = step_gradients(config, networks, state, x, y)
    difference = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), joint['decoder'],
                              want['decoder'])
    assert max(jax.tree.leaves(difference)) > 1e-2


def test_the_decoder_reuses_the_discriminators_backward_pass():
  """The saturating reversal from the discriminator's own pullback equals a second backward
  pass through the discriminator for L_GAN_dec."""
  for passes_choice in ('separate', 'joint'):
    config, networks, _, state = build('vaegan', gamma=0.3)
    config.model.passes = passes_choice
    x = images()
    shared = step_gradients(config, networks, state, x)
    second = step_gradients(config, networks, state, x, share_discriminator_pass=False)
    assert_trees_close(shared, second)


@pytest.mark.parametrize('kind,ratio,expected', [
    ('vaegan', 0.66, (0.66, 0.17)),       # Feb: two kinds of fakes share 1 - r
    ('vae_disl', 0.66, (0.66, 0.17)),
    ('gan', 0.5, (1.0, 1.0)),             # model/gan.py scales nothing at its default
    ('gan', 0.3, (0.3, 0.7)),
])
def test_derived_gan_weights(kind, ratio, expected):
  config = tiny_config(kind)
  config.loss.real_vs_gen_weight = config.loss.gan_real_vs_gen_weight = ratio
  np.testing.assert_allclose(steps.gan_weights(config, 1 if kind == 'gan' else 2), expected)
  config.loss.fakes = 'prior'
  config.loss.real_vs_gen_weight = 0.5
  if kind != 'gan':                       # Mar: prior samples alone, 0.5 / 0.5
    np.testing.assert_allclose(steps.gan_weights(config, 1), (0.5, 0.5))


# ---------------------------------------------------------------- the joint passes [ours]
def joint_losses(config, networks, state, x, y=None):
  """The joint passes' loss terms as plain functions of the three networks' params, written out
  by hand: Dec([z; zp]) and Dis([x; x~; xp]) once each."""
  batch, loss = x.shape[0], config.loss
  prior_z, noise = noises(config, state, batch)
  apply = train_mode(networks, state, y, batch)
  ratio = loss.real_vs_gen_weight
  real_weight, fake_weight = ratio, (1 - ratio) / (1 if loss.fakes == 'prior' else 2)

  def terms(encoder_params, decoder_params, discriminator_params):
    result = {}
    mu, log_variance = apply('encoder', encoder_params, x)
    result['prior'] = -0.5 * jnp.sum(1 + log_variance - mu**2 - jnp.exp(log_variance))
    latents = jnp.concatenate([mu + noise * jnp.exp(0.5 * log_variance), prior_z])
    fakes = apply('decoder', decoder_params, latents)
    if config.model.kind == 'vae':
      result['pixel'] = 0.5 * jnp.sum((fakes[:batch] - x) ** 2)
      return result
    logits, features = apply('discriminator', discriminator_params,
                             jnp.concatenate([x, fakes]))
    layer = features[loss.feature_layer]
    result['llike'] = 0.5 * jnp.sum((layer[batch:2 * batch]
                                     - jax.lax.stop_gradient(layer[:batch])) ** 2)
    d = jax.nn.sigmoid(logits)
    real_d, fake_d = d[:batch], d[batch:]
    if loss.fakes == 'prior':
      fake_d = fake_d[batch:]
    eps = loss.gan_eps if loss.gan_form == 'eps' else 0.0
    result['discriminator'] = (-real_weight * jnp.sum(jnp.log(real_d + eps))
                               - fake_weight * jnp.sum(jnp.log(1 - fake_d + eps)))
    if loss.decoder_gan == 'saturating':   # -L_GAN / w_fake: the real term weighted w_r / w_f
      result['decoder_gan'] = (real_weight / fake_weight * jnp.sum(jnp.log(real_d + eps))
                               + jnp.sum(jnp.log(1 - fake_d + eps)))
    else:
      result['decoder_gan'] = -jnp.sum(jnp.log(fake_d + eps))
    return result

  return terms


def grad_of(terms, params, argnum, combine):
  return jax.grad(lambda *p: combine(terms(*p)), argnums=argnum)(*params)


JOINT_CASES = [
    ('vaegan', dict(gamma=0.5)),
    ('vaegan', dict(gamma=0.5, real_vs_gen_weight=0.5)),
    ('vaegan', dict(gamma=0.5, fakes='prior', decoder_gan='non_saturating',
                    real_vs_gen_weight=0.5)),
    ('vaegan', dict(gamma=0.5, gan_form='logit')),
    ('vae_disl', {}),
    ('vae', {}),
    ('vaegan,conditional', dict(gamma=0.5)),
    ('vae,conditional', {}),
]


@pytest.mark.parametrize('kind,loss_overrides', JOINT_CASES)
def test_joint_passes_give_each_network_the_gradient_of_its_own_objective(kind, loss_overrides):
  config, networks, _, state = build(kind, **loss_overrides)
  config.model.passes = 'joint'
  x, y = images(), conditions(config)
  got = step_gradients(config, networks, state, x, y)
  terms = joint_losses(config, networks, state, x, y)
  params = network_params(state)
  gamma = config.loss.gamma
  expected = {
      'vaegan': dict(encoder=lambda t: t['prior'] + t['llike'],
                     decoder=lambda t: gamma * t['llike'] + (1 - gamma) * t['decoder_gan'],
                     discriminator=lambda t: t['discriminator']),
      'vae_disl': dict(encoder=lambda t: t['prior'] + t['llike'],
                       decoder=lambda t: t['llike'],
                       discriminator=lambda t: t['discriminator']),
      'vae': dict(encoder=lambda t: t['prior'] + t['pixel'], decoder=lambda t: t['pixel']),
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


def run_pmapped(devices, steps_to_run=2, kind='vaegan', passes_choice='separate'):
  config = tiny_config(kind)
  config.model.passes = passes_choice
  config, networks, optimizers, state = build_from(config, axis_name=DEVICE_AXIS)
  train_step = steps.make_pmapped_train_step(config, networks, optimizers, devices=devices)
  all_metrics = []
  for step in range(steps_to_run):
    x = images(seed=step).reshape(len(devices), BATCH // len(devices), 16, 16, 3)
    y = conditions(config, seed=step)
    y = None if y is None else y.reshape(len(devices), BATCH // len(devices), -1)
    state, metrics = train_step(state, x, y)
    all_metrics.append(metrics)
  return jax.device_get(state), jax.device_get(all_metrics)


@needs_eight_devices
@pytest.mark.parametrize('kind,passes_choice', [
    ('vaegan', 'separate'), ('vae', 'separate'), ('gan', 'separate'),
    ('vaegan,conditional', 'separate'), ('vaegan', 'joint')])
def test_eight_devices_make_the_same_update_as_one(kind, passes_choice):
  one_state, one_metrics = run_pmapped(jax.devices()[:1], kind=kind, passes_choice=passes_choice)
  eight_state, eight_metrics = run_pmapped(jax.devices()[:8], kind=kind,
                                           passes_choice=passes_choice)
  assert int(eight_state.step) == 2
  assert_trees_close(eight_state, one_state, rtol=1e-4, atol=2e-6)
  assert_trees_close(eight_metrics, one_metrics, rtol=1e-4, atol=1e-5)


def test_devices_draw_different_noise_from_the_same_key():
  key = jax.random.PRNGKey(0)
  noise = passes.per_example_normal(key, jnp.arange(4), 8)
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


@needs_eight_devices
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
