"""The loss terms of VAE/GAN as pure jnp functions.

Every term is returned per example ([B]); `reduce_over_batch` applies the reduction. The paper's
(and the authors' code's) reduction is a sum over elements and over the batch.

Discriminator probabilities are never formed where it can be avoided: with `form='logit'`,
-log D(x) = softplus(-logit) and -log(1 - D(x)) = softplus(logit), exact for any logit. The
authors' code used -log(D + eps) and -log(1 - D + eps) with eps = 1e-3 (`form='eps'`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

def _sum_per_example(x: jax.Array) -> jax.Array:
  return jnp.sum(x.reshape(x.shape[0], -1).astype(jnp.float32), axis=1)


def kl_to_standard_normal(mu: jax.Array, log_variance: jax.Array) -> jax.Array:
  """KL(N(mu, exp(log_variance)) || N(0, I)) = -0.5 sum(1 + logvar - mu^2 - exp(logvar)).

  Args:
    mu, log_variance: [B, latent_dim].
  Returns:
    [B], in nats.
  """
  return -0.5 * jnp.sum(1.0 + log_variance - mu**2 - jnp.exp(log_variance), axis=-1)


def gaussian_nll(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """-log N(target; prediction, I) without its constant: 0.5 * ||prediction - target||^2.

  Used for the feature-wise loss (prediction = Dis_l(x~), target = Dis_l(x)) and for the plain
  VAE's pixel-wise loss. The target receives no gradient (the paper's Dis_l(x) is a constant of
  the reconstruction loss: the discriminator is never trained on L_llike through it).

  Args:
    prediction, target: [B, ...] of equal shape.
  Returns:
    [B]: the sum over all non-batch elements.
  """
  difference = prediction.astype(jnp.float32) - jax.lax.stop_gradient(target).astype(jnp.float32)
  return 0.5 * _sum_per_example(difference**2)


def neg_log_real(logits: jax.Array, form: str = 'logit', eps: float = 1e-3) -> jax.Array:
  """-log D(x), the cross-entropy of calling x real. logits: [B] -> [B]."""
  if form == 'logit':
    return jax.nn.softplus(-logits)
  return -jnp.log(jax.nn.sigmoid(logits) + eps)


def neg_log_fake(logits: jax.Array, form: str = 'logit', eps: float = 1e-3) -> jax.Array:
  """-log(1 - D(x)), the cross-entropy of calling x fake. logits: [B] -> [B]."""
  if form == 'logit':
    return jax.nn.softplus(logits)
  return -jnp.log(1.0 - jax.nn.sigmoid(logits) + eps)


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, real_weight: float,
                       fake_weight: float, form: str = 'logit', eps: float = 1e-3) -> jax.Array:
  """The discriminator's weighted binary cross-entropy, per example.

  Args:
    real_logits: [B] logits of data images.
    fake_logits: [F, B] logits of F kinds of fakes (prior samples, reconstructions), row-aligned
      with the real examples so that each example's term holds all its images.
    real_weight, fake_weight: the code's 0.66 / 0.17 (Feb) or 0.5 / 0.5 (Mar).
  Returns:
    [B]: real_weight * -log D(x) + fake_weight * sum over fakes of -log(1 - D(fake)).
  """
  return (real_weight * neg_log_real(real_logits, form, eps)
          + fake_weight * jnp.sum(neg_log_fake(fake_logits, form, eps), axis=0))


def decoder_gan_loss(real_logits: jax.Array, fake_logits: jax.Array, mode: str = 'saturating',
                     form: str = 'logit', eps: float = 1e-3, real_over_fake_weight: float = 1.0
                     ) -> jax.Array:
  """The decoder's GAN term, per example, to be minimised.

  Args:
    real_logits: [B] logits of data images.
    fake_logits: [F, B] logits of the fakes shown to the discriminator.
    mode: 'saturating' is the authors' gradient reversal: -L_GAN / w_fake, minus the
      discriminator's loss with the real term weighted w_real / w_fake (`real_over_fake_weight`)
      and each fake term 1. Its gradient at the fakes is what the code's ScaleGradient(1 / w)
      passes to them. Batch norm makes D(x) depend on the fakes, so the real term counts.
      'non_saturating' [ours] is the sum of -log D(fake).
  Returns:
    [B].
  """
  if mode == 'saturating':
    return -discriminator_loss(real_logits, fake_logits, real_over_fake_weight, 1.0, form, eps)
  return jnp.sum(neg_log_real(fake_logits, form, eps), axis=0)


def reduce_over_batch(per_example: jax.Array, reduction: str, global_batch_size: int) -> jax.Array:
  """Sum of a local [B] term, divided by the global batch size for 'mean'.

  Under data parallelism each device reduces its own examples, and the per-device results add up
  (lax.psum) to the reduction over the global batch, whatever the number of devices.
  """
  total = jnp.sum(per_example)
  return total if reduction == 'sum' else total / global_batch_size
