"""The forward pass of one train step: which network runs on which images, and the pullbacks.

`model.passes` picks how the networks are applied. Every application is in train mode and
normalises over its own batch, so which images share an application changes the numbers.

'separate', the authors' code (model/aegan.py, `AEGAN.setup`, in andersbll/autoencoding_beyond_pixels):

    mu, logvar = Enc(x);  z = mu + eps * exp(logvar / 2)                            B images
    x~ = Dec(z)                          the reconstruction pass                    B
    Dis_l([x~; x])                       the feature pass, for L_llike              2B
    fakes = Dec([sg(z); zp])             the generation pass (Feb code), or         2B
            Dec(zp)                      prior samples only (Mar: discriminate_ae_recon=False)  B
    Dis([x; fakes])                      the GAN pass, for L_GAN                    3B or 2B

  sg(z) is z with its gradient cut (the code's ScaleGradient(0.0)): the encoder gets no GAN
  gradient. The feature pass gives the discriminator no parameter gradient (the code weights it
  0 through WeightedParameter(p, 1.0, 0.0)). A plain VAE runs Enc and Dec(z) only; the GAN
  baseline (model/gan.py) runs Dec(zp) and Dis([x; Dec(zp)]).

'joint' [ours], cheaper: Dec([z; zp]) once and Dis([x; x~; xp]) once; L_llike takes Dis_l from
  that same discriminator pass, so batch norm mixes reconstructions, prior samples and data.

Batch-norm running statistics. The code keeps one set per application (each a deep copy of the
network). The state here keeps one set per network: the encoder's only pass; the decoder's
reconstruction pass, because the authors decode test images and samples with that copy
(`AEGAN.decode` uses `self.decoder`); the discriminator's GAN pass, the only one that runs every
layer. The eval step normalises with these. Where a network runs once, its statistics are
that pass's.

`Forward` holds what the loss terms read (mu, log-variance, x~, Dis_l of x~ and x, the logits of
x and of each kind of fake) and one pullback per route a gradient takes, so that the routing in
steps.py reads the same for both choices.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vaegan_jax.model.models import Networks
from vaegan_jax.training.state import NetworkState, TrainState

Pullback = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Forward:
  """One step's network outputs, and the pullbacks of the routes gradients take; None where the
  model kind has no such output or route.

  Shapes: mu, log_variance [B, L]; reconstructions x~ [B, R, R, C]; reconstruction_features and
  real_features Dis_l(x~) and Dis_l(x), [B, ...]; logits {'real', 'reconstruction', 'prior'},
  each [B] ('reconstruction' where x~ went through the discriminator); shown_fakes: the kinds of
  fakes L_GAN scores, in the order of fake_logits' rows.
  """
  batch_stats: dict[str, Any]
  logits: dict[str, jax.Array] = dataclasses.field(default_factory=dict)
  shown_fakes: tuple[str, ...] = ()
  mu: jax.Array | None = None
  log_variance: jax.Array | None = None
  reconstructions: jax.Array | None = None
  reconstruction_features: jax.Array | None = None
  real_features: jax.Array | None = None
  # Image cotangents travel as {kind: [B, R, R, C]}, kind 'reconstruction' or 'prior': batch
  # norm couples the images of a pass, so a term of x~ alone can reach prior samples too.
  # (d mu, d log_variance, d z) -> encoder gradients
  pull_encoder: Pullback | None = None
  # {kind: d image} -> (decoder gradients, d z [B, L]), through the pass that made x~
  pull_reconstructions: Pullback | None = None
  # d Dis_l(x~) -> {kind: d image} of the decoded images the feature pass saw
  pull_features: Pullback | None = None
  # (d real logits [B], d fake logits [F, B]) -> (discriminator gradients, {kind: d image})
  pull_discriminator: Pullback | None = None
  # {kind: d image} -> decoder gradients, through the pass that made the fakes
  pull_fakes: Pullback | None = None
  # One decoder application made both x~ and the fakes (the joint passes): the routing then
  # pulls the decoder's whole objective back once instead of once per term.
  one_decoder_pass: bool = False

  @property
  def fake_logits(self) -> jax.Array:
    """[F, B]: the logits of the fakes L_GAN scores, one row per kind."""
    return jnp.stack([self.logits[kind] for kind in self.shown_fakes])


def per_example_normal(key: jax.Array, example_ids: jax.Array, size: int) -> jax.Array:
  """N(0, I) draws of `size` for each global example index: [len(example_ids), size].

  Each example's noise depends only on the key and its index in the global batch, so devices
  draw different noise and any number of devices draws the same noise for the same batch.
  """
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (size,)))(example_ids)


def apply_in_train_mode(module: Any, network: NetworkState, inputs: jax.Array,
                        condition: jax.Array | None,
                        postprocess: Callable[[Any], Any] = lambda outputs: outputs):
  """One application of a network in train mode (y, `condition`, is a constant), then
  `postprocess` of its outputs. Returns (outputs, pullback over (params, inputs), the new batch
  statistics)."""
  def apply(params, x):
    outputs, updates = module.apply({'params': params, 'batch_stats': network.batch_stats}, x,
                                    train=True, condition=condition, mutable=['batch_stats'])
    return postprocess(outputs), updates['batch_stats']

  return jax.vjp(apply, network.params, inputs, has_aux=True)


def repeat(condition: jax.Array | None, times: int) -> jax.Array | None:
  """y for `times` stacked copies of the batch ([y; y; ...]), or None."""
  return None if condition is None else jnp.tile(condition, (times, 1))


def shown_fakes(config: Any) -> tuple[str, ...]:
  """The kinds of fakes L_GAN scores: prior samples, and reconstructions where loss.fakes says
  so (the Feb code) and the model has an encoder."""
  if config.model.kind == 'gan' or config.loss.fakes == 'prior':
    return ('prior',)
  return ('reconstruction', 'prior')


def forward(state: TrainState, images: jax.Array, conditions: jax.Array | None,
            axis_index: jax.Array, *, config: Any, networks: Networks) -> Forward:
  """Every network application of one step on this device's images [B, R, R, C] in [-1, 1]
  (y [B, A] or None), in train mode. axis_index: this device's index, so that each example draws
  the noise of its global index."""
  batch = images.shape[0]
  latent_dim = config.model.latent_dim
  step_key = jax.random.fold_in(state.rng, state.step)
  example_ids = axis_index * batch + jnp.arange(batch)
  prior_latents = per_example_normal(jax.random.fold_in(step_key, 0), example_ids, latent_dim)
  encoded = None
  if networks.encoder is not None:
    posterior_noise = per_example_normal(jax.random.fold_in(step_key, 1), example_ids, latent_dim)

    def reparameterise(moments):       # inside the pullback, so one pullback reaches mu and logvar
      mu, log_variance = moments
      return mu, log_variance, mu + posterior_noise * jnp.exp(0.5 * log_variance)

    encoded = apply_in_train_mode(networks.encoder, state.encoder, images, conditions,
                                  reparameterise)
  # The GAN baseline has one decoder and one discriminator pass either way.
  joint = config.model.passes == 'joint' and encoded is not None
  build = _joint_passes if joint else _separate_passes
  return build(state, images, conditions, prior_latents, encoded, config=config,
               networks=networks)


def _separate_passes(state, images, conditions, prior_latents, encoded, *, config, networks):
  """The authors' applications (module docstring): each pass of its own."""
  batch = images.shape[0]
  stats, found = {}, {}
  latents = None
  if encoded is not None:
    (mu, log_variance, latents), pull_encoder, stats['encoder'] = encoded
    reconstructions, pull_decoder, stats['decoder'] = apply_in_train_mode(
        networks.decoder, state.decoder, latents, conditions)
    found.update(mu=mu, log_variance=log_variance, reconstructions=reconstructions,
                 pull_encoder=pull_encoder,
                 pull_reconstructions=lambda cotangents: pull_decoder(cotangents['reconstruction']))
  if networks.discriminator is None:
    return Forward(batch_stats=stats, **found)

  if encoded is not None:
    # Dis_l([x~; x]): the discriminator's own gradient from here is discarded (weight 0).
    features, pull_feature_pass, _ = apply_in_train_mode(
        networks.discriminator, state.discriminator, jnp.concatenate([reconstructions, images]),
        repeat(conditions, 2), lambda out: out[1][config.loss.feature_layer])
    zero = jnp.zeros_like(features[batch:])
    found.update(reconstruction_features=features[:batch], real_features=features[batch:],
                 pull_features=lambda cotangent: {'reconstruction': pull_feature_pass(
                     jnp.concatenate([cotangent, zero]))[1][:batch]})

  fakes_shown = shown_fakes(config)
  fake_latents = {'reconstruction': None if latents is None else jax.lax.stop_gradient(latents),
                  'prior': prior_latents}
  fakes, pull_generation, generation_stats = apply_in_train_mode(
      networks.decoder, state.decoder,
      jnp.concatenate([fake_latents[kind] for kind in fakes_shown]),
      repeat(conditions, len(fakes_shown)))
  stats.setdefault('decoder', generation_stats)      # the GAN baseline's only decoder pass
  logits, pull_gan_pass, stats['discriminator'] = apply_in_train_mode(
      networks.discriminator, state.discriminator, jnp.concatenate([images, fakes]),
      repeat(conditions, 1 + len(fakes_shown)), lambda out: out[0])

  def pull_discriminator(real_cotangent, fake_cotangent):
    gradients, image_cotangent = pull_gan_pass(
        jnp.concatenate([real_cotangent, fake_cotangent.reshape(-1)]))
    per_kind = image_cotangent[batch:].reshape(len(fakes_shown), *images.shape)
    return gradients, dict(zip(fakes_shown, per_kind))

  def pull_fakes(cotangents):
    return pull_generation(jnp.concatenate([cotangents[kind] for kind in fakes_shown]))[0]

  rows = logits.reshape(1 + len(fakes_shown), batch)
  return Forward(batch_stats=stats, logits=dict(zip(('real',) + fakes_shown, rows)),
                 shown_fakes=fakes_shown, pull_discriminator=pull_discriminator,
                 pull_fakes=pull_fakes, **found)


def _joint_passes(state, images, conditions, prior_latents, encoded, *, config, networks):
  """[ours]: Dec([z; zp]) once and Dis([x; x~; xp]) once (module docstring)."""
  batch = images.shape[0]
  stats = {}
  (mu, log_variance, posterior_latents), pull_encoder, stats['encoder'] = encoded
  decoded_kinds = ('reconstruction', 'prior')
  decoded, pull_decoder, stats['decoder'] = apply_in_train_mode(
      networks.decoder, state.decoder, jnp.concatenate([posterior_latents, prior_latents]),
      repeat(conditions, 2))
  zero_image = jnp.zeros_like(images)

  def pull_decoded(cotangents):
    """{kind: d image} -> (decoder gradients, d z); kinds absent get a zero cotangent."""
    gradients, latent_cotangent = pull_decoder(jnp.concatenate(
        [cotangents.get(kind, zero_image) for kind in decoded_kinds]))
    return gradients, latent_cotangent[:batch]

  found = dict(mu=mu, log_variance=log_variance, reconstructions=decoded[:batch],
               pull_encoder=pull_encoder, pull_reconstructions=pull_decoded,
               pull_fakes=lambda cotangents: pull_decoded(cotangents)[0])
  if networks.discriminator is None:
    return Forward(batch_stats=stats, one_decoder_pass=True, **found)

  kinds = ('real',) + decoded_kinds
  (logits, features), pull_dis, stats['discriminator'] = apply_in_train_mode(
      networks.discriminator, state.discriminator, jnp.concatenate([images, decoded]),
      repeat(conditions, len(kinds)), lambda out: (out[0], out[1][config.loss.feature_layer]))
  fakes_shown = shown_fakes(config)
  zero_logits, zero_features = jnp.zeros_like(logits), jnp.zeros_like(features)

  def decoded_rows(image_cotangent):
    """The cotangent at [x; x~; xp] -> {kind: d image} of the decoded images x~ and xp."""
    per_kind = image_cotangent.reshape(len(kinds), *images.shape)
    return {kind: per_kind[1 + index] for index, kind in enumerate(decoded_kinds)}

  def pull_discriminator(real_cotangent, fake_cotangent):
    by_kind = {'real': real_cotangent, **dict(zip(fakes_shown, fake_cotangent))}
    cotangent = jnp.concatenate([by_kind.get(kind, jnp.zeros_like(real_cotangent))
                                 for kind in kinds])
    gradients, image_cotangent = pull_dis((cotangent, zero_features))
    return gradients, decoded_rows(image_cotangent)

  def pull_features(cotangent):
    return decoded_rows(pull_dis((zero_logits,
                                  zero_features.at[batch:2 * batch].set(cotangent)))[1])

  return Forward(batch_stats=stats, logits=dict(zip(kinds, logits.reshape(len(kinds), batch))),
                 shown_fakes=fakes_shown, one_decoder_pass=True,
                 reconstruction_features=features[batch:2 * batch],
                 real_features=features[:batch], pull_discriminator=pull_discriminator,
                 pull_features=pull_features, **found)
