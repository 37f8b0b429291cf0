"""[ours] Dai & Wipf 2019's second-stage VAE ("Diagnosing and enhancing VAE models", Sec. 4),
fitted ex post to a trained model's codes: a VAE on z whose own latent u is N(0, I), so that
decoding u ~ N(0, I) lands where the first stage's encoder puts data.

Networks and loss are the authors' (daib13/TwoStageVAE, network/two_stage_vae_model.py): the
towers of second_stage_network.tower, the encoder's heads mu_u and log sd_u, the decoder's head
z_hat and one learned scalar log gamma_z; loss2 = kl_loss2 + gen_loss2 per code; Adam. [ours],
sized for a quality measurement on a CPU: second_stage_network.WIDTH (theirs 1024); STEPS steps of
BATCH codes drawn with replacement at a cosine-decayed rate from LEARNING_RATE (theirs 800
epochs at 1e-4, halved every 300); and the encoder's means as the codes, as for every prior here
(theirs draw z from q(z|x) in every epoch).
"""
from __future__ import annotations

import functools
import math

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaegan_jax.model import second_stage_network as network

STEPS = 3000
BATCH = 128
LEARNING_RATE = 1e-2
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def init(key: jax.Array, latent_dim: int) -> dict:
  """{'encoder': layers, 'decoder': layers, 'log_gamma': 0}: Glorot-uniform kernels and zero
  biases (tf.layers.dense's defaults, as the authors' code gets them)."""
  encoder_key, decoder_key = jax.random.split(key)
  return {'encoder': _layers(encoder_key, latent_dim, ('head_mu', 'head_log_sd')),
          'decoder': _layers(decoder_key, latent_dim, ('head',)),
          'log_gamma': jnp.zeros((), jnp.float32)}


class Diverged(ValueError):
  """The second stage's loss became NaN or Inf."""


def _layers(key: jax.Array, latent_dim: int, heads: tuple[str, ...]) -> dict[str, jax.Array]:
  shapes = network.layer_shapes(latent_dim, heads)
  glorot = jax.nn.initializers.glorot_uniform()
  layers = {}
  for (name, fan_in, fan_out), layer_key in zip(shapes, jax.random.split(key, len(shapes))):
    layers[f'{name}_kernel'] = glorot(layer_key, (fan_in, fan_out), jnp.float32)
    layers[f'{name}_bias'] = jnp.zeros((fan_out,), jnp.float32)
  return layers


def loss(params: dict, codes: jax.Array, noise: jax.Array) -> jax.Array:
  """The authors' loss2 on codes z [B, L], with the encoder's reparameterisation noise [B, L]:
  (sum KL(q(u|z) || N(0, I)) + sum -log N(z; z_hat, gamma_z^2 I)) / B."""
  encoded = network.tower(params['encoder'], codes, jnp)
  mu, log_sd = encoded['head_mu'], encoded['head_log_sd']
  z_hat = network.tower(params['decoder'], mu + jnp.exp(log_sd) * noise, jnp)['head']
  log_gamma = params['log_gamma']
  kl = jnp.sum(jnp.square(mu) + jnp.exp(2 * log_sd) - 2 * log_sd - 1) / 2
  reconstruction = jnp.sum(jnp.square((codes - z_hat) / jnp.exp(log_gamma)) / 2 + log_gamma
                           + HALF_LOG_TWO_PI)
  return (kl + reconstruction) / codes.shape[0]


@functools.partial(jax.jit, static_argnames='steps')
def train(params: dict, codes: jax.Array, key: jax.Array, steps: int) -> tuple[dict, jax.Array]:
  """(params after `steps` Adam steps on batches of `codes` [N, L], the loss at each step)."""
  optimizer = optax.adam(optax.cosine_decay_schedule(LEARNING_RATE, steps))

  def step(carry, step_key):
    params, optimizer_state = carry
    pick_key, noise_key = jax.random.split(step_key)
    batch = codes[jax.random.randint(pick_key, (BATCH,), 0, codes.shape[0])]
    value, grads = jax.value_and_grad(loss)(params, batch, jax.random.normal(noise_key,
                                                                             batch.shape))
    updates, optimizer_state = optimizer.update(grads, optimizer_state)
    return (optax.apply_updates(params, updates), optimizer_state), value

  (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                     jax.random.split(key, steps))
  return params, losses


def fit(codes: np.ndarray, seed: int, steps: int | None = None
        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """The second stage trained on codes [N, L] from `seed` for `steps` (STEPS): (its decoder's
  float32 arrays, log gamma_z), for sampling (priors.SecondStage). Diverged where the loss
  became NaN or Inf."""
  init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
  codes = jnp.asarray(codes, jnp.float32)
  params, losses = train(init(init_key, codes.shape[1]), codes, train_key, steps or STEPS)
  losses = np.asarray(losses)
  if not np.isfinite(losses).all():
    raise Diverged(f'The second stage diverged (loss {losses[-1]}) on codes of scale '
                   f'{float(np.abs(codes).max()):.3g}')
  logging.info('Second stage: loss %.3f -> %.3f (the last 100 steps), gamma_z %.4f.',
               losses[:100].mean(), losses[-100:].mean(), float(np.exp(params['log_gamma'])))
  return ({name: np.asarray(value, np.float32) for name, value in params['decoder'].items()},
          np.asarray(params['log_gamma'], np.float32))
