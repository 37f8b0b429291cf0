"""passes.py with the routing of steps.py: the authors' separate passes give the gradients of
their graph, transcribed without either module; our joint passes give each network the gradient
of its own objective; each example draws its own noise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build
from step_inputs import (assert_trees_close, conditions, images, network_params, noises,
                         step_gradients, train_mode)

from vaegan_jax.training import passes


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


def test_devices_draw_different_noise_from_the_same_key():
  key = jax.random.PRNGKey(0)
  noise = passes.per_example_normal(key, jnp.arange(4), 8)
  assert len({tuple(np.asarray(row).round(5)) for row in noise}) == 4
