"""Each loss term against values computed by hand."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaegan_jax.model import losses


def test_kl_to_standard_normal():
  mu = jnp.array([[1.0, 0.0]])
  log_variance = jnp.array([[0.0, math.log(2.0)]])
  # -0.5 * [(1 + 0 - 1 - 1) + (1 + log 2 - 0 - 2)] = 1 - log(2) / 2
  np.testing.assert_allclose(losses.kl_to_standard_normal(mu, log_variance),
                             [1.0 - 0.5 * math.log(2.0)], rtol=1e-6)
  assert float(losses.kl_to_standard_normal(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0]) == 0.0


def test_gaussian_nll_sums_per_example_and_gives_the_target_no_gradient():
  prediction = jnp.array([[[1.0, 2.0]], [[3.0, 4.0]]])     # [B=2, 1, 2]
  target = jnp.array([[[0.0, 0.0]], [[1.0, 1.0]]])
  np.testing.assert_allclose(losses.gaussian_nll(prediction, target), [2.5, 6.5])
  grad_prediction, grad_target = jax.grad(
      lambda p, t: jnp.sum(losses.gaussian_nll(p, t)), argnums=(0, 1))(prediction, target)
  np.testing.assert_allclose(grad_prediction, prediction - target)
  assert float(jnp.abs(grad_target).sum()) == 0.0


@pytest.mark.parametrize('form', ['logit', 'eps'])
def test_cross_entropies(form):
  eps = 1e-3 if form == 'eps' else 0.0
  logits = jnp.array([math.log(3.0), -math.log(3.0)])     # D = 0.75 and 0.25
  np.testing.assert_allclose(losses.neg_log_real(logits, form),
                             [-math.log(0.75 + eps), -math.log(0.25 + eps)], rtol=1e-5)
  np.testing.assert_allclose(losses.neg_log_fake(logits, form),
                             [-math.log(0.25 + eps), -math.log(0.75 + eps)], rtol=1e-5)


def test_discriminator_loss_weights_real_and_each_fake():
  real = jnp.array([math.log(3.0)])                            # D(x) = 0.75
  fakes = jnp.array([[-math.log(3.0)], [math.log(3.0)]])       # D = 0.25 (rec.), 0.75 (prior)
  expected = 0.66 * -math.log(0.75) + 0.17 * (-math.log(0.75) - math.log(0.25))
  np.testing.assert_allclose(losses.discriminator_loss(real, fakes, 0.66, 0.17), [expected],
                             rtol=1e-6)


def test_decoder_gan_loss_saturating_and_non_saturating():
  real = jnp.array([math.log(3.0)])                            # D(x) = 0.75
  fakes = jnp.array([[-math.log(3.0)], [math.log(3.0)]])       # D = 0.25, 0.75
  # Saturating: minus the unweighted cross-entropy, log D(x) + sum of log(1 - D(fake)).
  np.testing.assert_allclose(losses.decoder_gan_loss(real, fakes, 'saturating'),
                             [math.log(0.75) + math.log(0.75) + math.log(0.25)], rtol=1e-6)
  np.testing.assert_allclose(losses.decoder_gan_loss(real, fakes, 'non_saturating'),
                             [-math.log(0.25) - math.log(0.75)], rtol=1e-6)


def test_reduce_over_batch():
  per_example = jnp.array([1.0, 2.0, 3.0])
  assert float(losses.reduce_over_batch(per_example, 'sum', 6)) == 6.0
  assert float(losses.reduce_over_batch(per_example, 'mean', 6)) == 1.0   # global batch of 6


@pytest.mark.parametrize('form', ['logit', 'eps'])
def test_no_nan_or_inf_with_extreme_logits(form):
  logits = jnp.array([-1e4, -100.0, 0.0, 100.0, 1e4])

  def total(logits):
    fakes = logits[None]
    return jnp.sum(losses.discriminator_loss(logits, fakes, 0.66, 0.17, form)
                   + losses.decoder_gan_loss(logits, fakes, 'saturating', form)
                   + losses.decoder_gan_loss(logits, fakes, 'non_saturating', form))

  value, grad = jax.value_and_grad(total)(logits)
  assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))
  if form == 'logit':   # exact: -log D(x) at logit -1e4 is 1e4, not a clipped log(eps)
    np.testing.assert_allclose(losses.neg_log_real(logits[:1]), [1e4], rtol=1e-6)
