"""The per-device train and eval steps, and their pmap wrapping.

The paper's losses (Larsen et al. 2016, Algorithm 1), per example and summed over the batch:

  1. L_prior   = KL(q(z|x) || N(0, I))                        -> encoder
  2. L_llike   = 0.5 ||Dis_l(x~) - Dis_l(x)||^2, x~ = Dec(z)  -> encoder; decoder, weight gamma
               (the plain VAE has L_pixel = 0.5 ||x~ - x||^2 in its place)
  3. L_GAN     = sum over [x; fakes] of w_i * BCE_i           -> discriminator
     L_GAN_dec = -L_GAN / w_fake, its reversal at the fakes   -> decoder, weight 1 - gamma

The weights are the authors' (`gan_weights`). Their code (model/aegan.py) scales the gradient
into D's output by w_i and the gradient into D's input images by 1 / w_i (ScaleGradient), and
gives the decoder's parameters -(1 - gamma) of what reaches the fakes (WeightedParameter on
decoder_neggrad); that is the gradient of L_GAN_dec. Because batch norm couples the images of a
pass, the real images' terms reach the fakes too, amplified by w_real / w_fake.

passes.py applies the networks (the authors' separate passes by default, or our joint ones)
and returns pullbacks; `compute_gradients` routes each term's cotangents through them, so each
network gets the gradient of its own objective alone (`loss_objectives`): the encoder never a
GAN gradient, the discriminator never an L_llike gradient.

One optimisation, `reversed_discriminator_gradient`: the saturating L_GAN_dec's gradient at the
fakes is -1 / w_fake times L_GAN's, so the decoder reuses the discriminator's backward pass; only
the non-saturating form [ours] pulls back through the discriminator a second time.

Under pmap the per-device sums add up (psum) to the global-batch sums, and batch norm averages
its statistics over the device axis, so N devices make the same update as one device on the same
global batch.

[ours] R1 on the real images (`r1_gradients`, loss.r1_weight > 0) joins the discriminator's
gradient; the decoder's EMA (decoder_ema_decay > 0) follows each step and is what eval_step
decodes with.

A new loss term touches, in this order:
  1. `loss_terms`: its per-example value from the heads (a new head also goes into
     `passes.Forward`, `HEADS` and `loss_cotangents`);
  2. `loss_objectives`: its weight in each network's objective, per model kind (the one table of
     the kinds; `loss_terms` computes the terms it names);
  3. `compute_gradients`: the route of its cotangent through the pullbacks to each network;
  4. `LOSS_TERMS`: its place on the console;
  5. a setting it needs: configs/schema.py, with its default in configs/celeba64.py.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax import lax

from vaegan_jax.model import losses
from vaegan_jax.model.models import Networks
from vaegan_jax.sharding import DEVICE_AXIS
from vaegan_jax.training import passes
from vaegan_jax.training import state as state_lib
from vaegan_jax.training.state import NetworkState, Optimizers, TrainState

Metrics = dict[str, jax.Array]
# Every loss term a model kind may have, in the order the console shows them.
LOSS_TERMS = ('prior', 'llike', 'pixel', 'decoder_gan', 'discriminator')
# What the loss terms are functions of (the forward pass's outputs that gradients flow into).
HEADS = ('mu', 'log_variance', 'reconstructions', 'reconstruction_features', 'real_logits',
         'fake_logits')


# ---------------------------------------------------------------- device-axis helpers
def _axis_size(axis_name: str | None) -> int:
  return 1 if axis_name is None else lax.axis_size(axis_name)


def _axis_index(axis_name: str | None) -> jax.Array:
  return jnp.zeros((), jnp.int32) if axis_name is None else lax.axis_index(axis_name)


def _psum(tree: Any, axis_name: str | None) -> Any:
  return tree if axis_name is None else lax.psum(tree, axis_name)


def _pmean(tree: Any, axis_name: str | None) -> Any:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


# ---------------------------------------------------------------- loss terms
def gan_weights(config: Any, fake_kinds: int) -> tuple[float, float]:
  """(w_real, w_fake): L_GAN's weight of each real and of each fake image.

  VAE/GAN (model/aegan.py): r = loss.real_vs_gen_weight for reals and (1 - r) * B / gen_size =
  (1 - r) / fake_kinds for fakes: Feb 0.66 / 0.17 with two kinds of fakes, Mar 0.5 / 0.5.
  The GAN baseline (model/gan.py) weights (r, 1 - r) with r = loss.gan_real_vs_gen_weight, and
  scales nothing when r is 0.5, its default: then both weights are 1.
  """
  if config.model.kind == 'gan':
    ratio = config.loss.gan_real_vs_gen_weight
    return (1.0, 1.0) if ratio == 0.5 else (ratio, 1.0 - ratio)
  ratio = config.loss.real_vs_gen_weight
  return ratio, (1.0 - ratio) / fake_kinds


def loss_objectives(config: Any) -> dict[str, dict[str, float]]:
  """The weight of each loss term in each network's objective (Algorithm 1 and the kinds).

  vae_disl is VAE/GAN with gamma = 1 (no GAN gradient into the decoder); the GAN baseline's
  generator takes the whole reversal (model/gan.py: WeightedParameter(p, -1.0, 0.0)).
  """
  kind, gamma = config.model.kind, config.loss.gamma
  objectives = {
      'vaegan': dict(encoder={'prior': 1.0, 'llike': 1.0},
                     decoder={'llike': gamma, 'decoder_gan': 1.0 - gamma},
                     discriminator={'discriminator': 1.0}),
      'vae_disl': dict(encoder={'prior': 1.0, 'llike': 1.0},
                       decoder={'llike': 1.0},
                       discriminator={'discriminator': 1.0}),
      'vae': dict(encoder={'prior': 1.0, 'pixel': 1.0}, decoder={'pixel': 1.0}),
      'gan': dict(decoder={'decoder_gan': 1.0}, discriminator={'discriminator': 1.0}),
  }
  return objectives[kind]


def loss_terms(config: Any, images: jax.Array, heads: dict[str, jax.Array | None],
               real_features: jax.Array | None, weights: tuple[float, float]
               ) -> dict[str, jax.Array]:
  """Every loss term the model kind's objectives name, per local example ([B] each).

  heads: HEADS from the forward pass: mu and log_variance [B, L]; reconstructions x~
    [B, R, R, C]; reconstruction_features Dis_l(x~); real_logits [B]; fake_logits [F, B].
  real_features: Dis_l(x), the target of L_llike (it gets no gradient).
  weights: (w_real, w_fake) of `gan_weights`.
  """
  loss_config = config.loss
  weighted = {term for objective in loss_objectives(config).values() for term in objective}
  terms = {}
  # 1. L_prior
  if 'prior' in weighted:
    terms['prior'] = losses.kl_to_standard_normal(heads['mu'], heads['log_variance'])
  # 2. L_llike at Dis_l, or the plain VAE's L_pixel
  if 'pixel' in weighted:
    terms['pixel'] = losses.gaussian_nll(heads['reconstructions'], images)
  if 'llike' in weighted:
    terms['llike'] = losses.gaussian_nll(heads['reconstruction_features'], real_features)
  # 3. L_GAN for the discriminator, and the decoder's reversal of it (shown where the decoder
  #    takes none of it: vae_disl)
  if 'discriminator' in weighted:
    form, eps = loss_config.gan_form, loss_config.gan_eps
    real_weight, fake_weight = weights
    terms['discriminator'] = losses.discriminator_loss(
        heads['real_logits'], heads['fake_logits'], real_weight, fake_weight, form, eps)
    terms['decoder_gan'] = losses.decoder_gan_loss(
        heads['real_logits'], heads['fake_logits'], loss_config.decoder_gan, form, eps,
        real_weight / fake_weight)
  return terms


# ---------------------------------------------------------------- gradients
def reversed_discriminator_gradient(image_gradients: dict[str, jax.Array], fake_weight: float
                                    ) -> dict[str, jax.Array]:
  """The saturating L_GAN_dec's gradient at the fakes from L_GAN's: -1 / w_fake times it, so
  the decoder needs no backward pass of its own through the discriminator."""
  return {kind: -gradient / fake_weight for kind, gradient in image_gradients.items()}


def weighted_sum(parts: list[tuple[float, Any]]) -> Any:
  """sum of weight * tree over (weight, tree) pairs."""
  return jax.tree.map(lambda *leaves: sum(weight * leaf for (weight, _), leaf in
                                          zip(parts, leaves)), *[tree for _, tree in parts])


def loss_cotangents(config: Any, images: jax.Array, forward: passes.Forward,
                    weights: tuple[float, float], global_batch_size: int
                    ) -> tuple[dict[str, jax.Array], Callable[[str], dict[str, Any]]]:
  """(per-example loss terms, cotangent): cotangent(term) is d(term, reduced over the batch) /
  d(each of HEADS), a dict with None for heads the kind lacks."""
  heads = dict(mu=forward.mu, log_variance=forward.log_variance,
               reconstructions=forward.reconstructions,
               reconstruction_features=forward.reconstruction_features,
               real_logits=forward.logits.get('real'),
               fake_logits=forward.fake_logits if forward.shown_fakes else None)

  def reduced_terms(heads):
    terms = loss_terms(config, images, heads, forward.real_features, weights)
    return {name: losses.reduce_over_batch(value, config.loss.reduction, global_batch_size)
            for name, value in terms.items()}, terms

  totals, pull_heads, terms = jax.vjp(reduced_terms, heads, has_aux=True)
  return terms, lambda term: pull_heads({name: jnp.asarray(name == term, total.dtype)
                                         for name, total in totals.items()})[0]


def decoder_gradients(forward: passes.Forward, image_grads: dict[str, dict[str, jax.Array]],
                      weights: dict[str, float]) -> tuple[Any, jax.Array | None]:
  """(the decoder's gradient, d z): each term's image cotangents ({term: {kind: d image}})
  pulled back through the decoder pass that made those images, times the term's weight; and the
  gradient of L_llike (or L_pixel) at z, the encoder's share, or None. One joint decoder pass
  takes the weighted sum of the terms at once, and a second pullback, for z alone, whose
  parameter gradient XLA drops."""
  term = next((name for name in ('pixel', 'llike') if name in image_grads), None)
  if forward.one_decoder_pass:
    kinds = {kind for grads in image_grads.values() for kind in grads}
    combined = {kind: sum(weights[name] * grads[kind] for name, grads in image_grads.items()
                          if kind in grads) for kind in kinds}
    latents_grad = None if term is None else forward.pull_reconstructions(image_grads[term])[1]
    return forward.pull_fakes(combined), latents_grad
  parts, latents_grad = [], None
  if 'decoder_gan' in image_grads:
    parts.append((weights['decoder_gan'], forward.pull_fakes(image_grads['decoder_gan'])))
  if term is not None:
    reconstruction_grads, latents_grad = forward.pull_reconstructions(image_grads[term])
    parts.append((weights[term], reconstruction_grads))
  return weighted_sum(parts), latents_grad


def compute_gradients(state: TrainState, images: jax.Array, conditions: jax.Array | None = None,
                      *, config: Any, networks: Networks, axis_name: str | None = DEVICE_AXIS,
                      share_discriminator_pass: bool = True
                      ) -> tuple[dict[str, Any], dict[str, Any], dict[str, jax.Array],
                                 passes.Forward]:
  """Per-network gradients of the local examples' losses (Algorithm 1's routing).

  Args:
    state: the train state (read only).
    images: [B, R, R, C] local batch in [-1, 1].
    conditions: [B, A] attributes in {-1, +1} for a conditional model, else None.
    share_discriminator_pass: use `reversed_discriminator_gradient` for the saturating decoder
      term (False pulls it back through the discriminator again: the same numbers, for tests).
  Returns:
    (gradients, new batch statistics, per-example loss terms, the forward pass), the first two
    keyed by network name. Gradients are of this device's part of the global sum.
  """
  forward = passes.forward(state, images, conditions, _axis_index(axis_name), config=config,
                           networks=networks)
  weights = gan_weights(config, max(len(forward.shown_fakes), 1))
  terms, cotangent = loss_cotangents(config, images, forward, weights,
                                     images.shape[0] * _axis_size(axis_name))
  decoder_weights = loss_objectives(config)['decoder']
  gradients, image_grads = {}, {}          # image_grads: term -> {kind of image: d image}

  # 3. L_GAN: the discriminator's gradient; the decoder's reversal of it at the fakes.
  if forward.pull_discriminator is not None:
    heads_grad = cotangent('discriminator')
    gradients['discriminator'], discriminator_image_grads = forward.pull_discriminator(
        heads_grad['real_logits'], heads_grad['fake_logits'])
  if 'decoder_gan' in decoder_weights:
    if config.loss.decoder_gan == 'saturating' and share_discriminator_pass:
      image_grads['decoder_gan'] = reversed_discriminator_gradient(discriminator_image_grads,
                                                                   weights[1])
    else:
      heads_grad = cotangent('decoder_gan')
      _, image_grads['decoder_gan'] = forward.pull_discriminator(heads_grad['real_logits'],
                                                                 heads_grad['fake_logits'])

  # 2. L_llike (or L_pixel): at x~, and through batch norm at the other decoded images.
  if 'llike' in decoder_weights:
    image_grads['llike'] = forward.pull_features(cotangent('llike')['reconstruction_features'])
  if 'pixel' in decoder_weights:
    image_grads['pixel'] = {'reconstruction': cotangent('pixel')['reconstructions']}
  gradients['decoder'], latents_grad = decoder_gradients(forward, image_grads, decoder_weights)

  # 1. L_prior: the encoder's own term, plus L_llike's gradient through z.
  if forward.pull_encoder is not None:
    heads_grad = cotangent('prior')
    gradients['encoder'] = forward.pull_encoder(
        (heads_grad['mu'], heads_grad['log_variance'], latents_grad))[0]
  return gradients, forward.batch_stats, terms, forward


# ---------------------------------------------------------------- R1 [ours]
def r1_penalty(logits: Callable[[jax.Array], jax.Array], images: jax.Array) -> jax.Array:
  """Mescheder et al. 2018's R1 on real images [B, R, R, C]: 0.5 ||d sum(logits(x)) / dx||^2,
  the gradient of the batch's summed logits (as StyleGAN2 takes it), summed over the batch."""
  gradient = jax.grad(lambda x: jnp.sum(logits(x)))(images)
  return 0.5 * jnp.sum(jnp.square(gradient.astype(jnp.float32)))


def uses_r1(config: Any) -> bool:
  """Whether the run adds R1 (loss.r1_weight > 0 and a discriminator to penalise)."""
  return config.loss.r1_weight > 0 and config.model.kind != 'vae'


def r1_gradients(state: TrainState, images: jax.Array, conditions: jax.Array | None, *,
                 config: Any, networks: Networks, axis_name: str | None
                 ) -> tuple[Any, jax.Array]:
  """(the discriminator's gradient of r1_weight * r1_every * R1, R1 per example) on this
  device's real images. R1 is lazy: it runs on every r1_every-th step only, with the weight
  times r1_every (as StyleGAN2), in an executable of its own (`train_step(with_r1=True)`; the
  loop's `dispatch_plan` picks those steps). A lax.cond would keep one executable, but XLA:CPU
  runs the convolutions inside a conditional 12x slower. The discriminator runs as in its
  passes (train mode; the statistics this application computes are dropped). Its gradient
  joins L_GAN's, so the gating's skips apply to it too."""
  discriminator = state.discriminator
  loss = config.loss
  scale = loss.r1_weight * loss.r1_every / (
      1.0 if loss.reduction == 'sum' else images.shape[0] * _axis_size(axis_name))

  def penalty(params):
    def logits(x):
      (real_logits, _), _ = networks.discriminator.apply(
          {'params': params, 'batch_stats': discriminator.batch_stats}, x, train=True,
          condition=conditions, mutable=['batch_stats'])
      return real_logits
    return r1_penalty(logits, images)

  value, gradient = jax.value_and_grad(penalty)(discriminator.params)
  return jax.tree.map(lambda leaf: scale * leaf, gradient), value / images.shape[0]


# ---------------------------------------------------------------- updates
def equilibrium_gate(real_bce: jax.Array, fake_bce: jax.Array, equilibrium: float,
                     margin: float) -> tuple[jax.Array, jax.Array]:
  """The authors' code's gating: (update discriminator?, update decoder?) as bool scalars.

  With mean cross-entropies of real and fake images: either below equilibrium - margin (the
  discriminator is winning) skips the discriminator; either above equilibrium + margin (it is
  losing) skips the decoder; when both would be skipped, both update.
  """
  skip_discriminator = (real_bce < equilibrium - margin) | (fake_bce < equilibrium - margin)
  skip_decoder = (real_bce > equilibrium + margin) | (fake_bce > equilibrium + margin)
  both_skipped = skip_discriminator & skip_decoder
  return ~skip_discriminator | both_skipped, ~skip_decoder | both_skipped


def apply_network_update(network: NetworkState, gradients: Any, new_batch_stats: Any,
                         optimizer: optax.GradientTransformation, learning_rate: jax.Array,
                         update: jax.Array) -> NetworkState:
  """One optimizer step, kept only where `update` is true (branch-free under jit).

  Batch statistics advance either way: they come from the forward pass, as in the code.
  """
  hyperparams = dict(network.opt_state.hyperparams, learning_rate=learning_rate)
  opt_state = network.opt_state._replace(hyperparams=hyperparams)
  updates, new_opt_state = optimizer.update(gradients, opt_state, network.params)
  new_params = optax.apply_updates(network.params, updates)
  keep_if_skipped = lambda new, old: jnp.where(update, new, old)
  return NetworkState(
      params=jax.tree.map(keep_if_skipped, new_params, network.params),
      batch_stats=new_batch_stats,
      opt_state=jax.tree.map(keep_if_skipped, new_opt_state, opt_state))


def train_step(state: TrainState, images: jax.Array, conditions: jax.Array | None = None, *,
               config: Any, networks: Networks, optimizers: Optimizers,
               axis_name: str | None = DEVICE_AXIS, with_r1: bool = False
               ) -> tuple[TrainState, Metrics]:
  """One VAE/GAN update of all three networks on this device's part of the global batch.

  Args:
    state: replicated train state.
    images: [B, R, R, C] local batch in [-1, 1].
    conditions: [B, A] attributes in {-1, +1} for a conditional model, else None.
    with_r1: whether this is one of R1's lazy steps (`r1_gradients`); a run with R1 reports
      r1 = 0 on the others.
  Returns:
    (new state, metrics); the metrics are global-batch averages, identical on every device:
    per-example loss terms, D(x), D(x~), D(xp) (mean probabilities), the mean real and fake
    cross-entropies the gating reads, whether each gated network was skipped (1.0) or not,
    each network's gradient norm and learning rate.
  """
  gradients, new_batch_stats, terms, forward = compute_gradients(
      state, images, conditions, config=config, networks=networks, axis_name=axis_name)
  if uses_r1(config) and with_r1:
    r1_gradient, terms['r1'] = r1_gradients(state, images, conditions, config=config,
                                             networks=networks, axis_name=axis_name)
    gradients['discriminator'] = jax.tree.map(jnp.add, gradients['discriminator'], r1_gradient)
  elif uses_r1(config):                # every step's metrics have the same names
    terms['r1'] = jnp.zeros((), jnp.float32)
  gradients = _psum(gradients, axis_name)
  metrics = {name: jnp.mean(value) for name, value in terms.items()}
  update = {name: jnp.array(True) for name in gradients}
  if forward.logits:
    for kind, logits in forward.logits.items():      # real, reconstruction, prior
      metrics[f'd_{kind}'] = jnp.mean(jax.nn.sigmoid(logits))
    form, eps = config.loss.gan_form, config.loss.gan_eps
    metrics['real_bce'] = jnp.mean(losses.neg_log_real(forward.logits['real'], form, eps))
    metrics['fake_bce'] = jnp.mean(losses.neg_log_fake(forward.fake_logits, form, eps))
  metrics = _pmean(metrics, axis_name)
  if forward.logits and config.loss.gating:
    update['discriminator'], update['decoder'] = equilibrium_gate(
        metrics['real_bce'], metrics['fake_bce'], config.loss.equilibrium, config.loss.margin)
    metrics['skipped_discriminator'] = 1.0 - update['discriminator'].astype(jnp.float32)
    metrics['skipped_decoder'] = 1.0 - update['decoder'].astype(jnp.float32)

  new_networks = {}
  for name, network_gradients in gradients.items():
    learning_rate = jnp.asarray(optimizers.schedules[name](state.step), jnp.float32)
    new_networks[name] = apply_network_update(
        getattr(state, name), network_gradients, new_batch_stats[name],
        getattr(optimizers, name), learning_rate, update[name])
    metrics[f'{name}_grad_norm'] = optax.tree.norm(network_gradients)
    metrics[f'{name}_learning_rate'] = learning_rate
  if state.decoder_ema is not None:
    new_networks['decoder_ema'] = state_lib.moving_average(
        state.decoder_ema, new_networks['decoder'], ema_decay(config, state.step))
  new_state = state.replace(step=state.step + 1, **new_networks)
  return new_state, metrics


def ema_decay(config: Any, step: jax.Array) -> float | jax.Array:
  """The decoder EMA's decay at `step`: 0 before config.decoder_ema_start (the average copies
  the decoder, so that it starts from a trained decoder, not the initial one), then
  config.decoder_ema_decay."""
  if config.decoder_ema_start == 0:
    return config.decoder_ema_decay
  return jnp.where(step < config.decoder_ema_start, 0.0, config.decoder_ema_decay)


# ---------------------------------------------------------------- evaluation
def eval_step(state: TrainState, images: jax.Array, prior_latents: jax.Array,
              conditions: jax.Array | None = None, *, config: Any, networks: Networks,
              axis_name: str | None = DEVICE_AXIS) -> tuple[dict[str, jax.Array], Metrics]:
  """Test-time outputs with the running batch statistics the state keeps (which pass's:
  passes.py), and the decoder's EMA where the run keeps one; the encoder returns mu (the Feb
  code).

  Args:
    images: [B, R, R, C] local test batch.
    prior_latents: [B, latent] fixed z for samples.
    conditions: [B, A] the test images' attributes in {-1, +1} for a conditional model (samples
      are drawn for them too), else None.
  Returns:
    (images, averages): 'reconstructions' and 'samples' ([B, R, R, C]); per-example averages
    over the global batch (identical on every device) of 'kl', 'pixel_error' (0.5 * squared
    error per image) and, with a discriminator, 'feature_error' at Dis_l, 'd_real',
    'd_reconstruction', 'd_prior'.
  """
  def apply(name, inputs, copies=1):
    network = state_lib.sampling_decoder(state) if name == 'decoder' else getattr(state, name)
    return getattr(networks, name).apply(
        {'params': network.params, 'batch_stats': network.batch_stats}, inputs, train=False,
        condition=passes.repeat(conditions, copies))

  outputs, averages = {}, {}
  samples = apply('decoder', prior_latents)
  outputs['samples'] = samples
  if networks.encoder is not None:
    mu, log_variance = apply('encoder', images)
    reconstructions = apply('decoder', mu)
    outputs['reconstructions'] = reconstructions
    averages['kl'] = losses.kl_to_standard_normal(mu, log_variance)
    averages['pixel_error'] = losses.gaussian_nll(reconstructions, images)
  if networks.discriminator is not None:
    fakes = [outputs[name] for name in ('reconstructions', 'samples') if name in outputs]
    logits, features = apply('discriminator', jnp.concatenate([images] + fakes), 1 + len(fakes))
    probabilities = jax.nn.sigmoid(logits).reshape(-1, images.shape[0])
    averages['d_real'], averages['d_prior'] = probabilities[0], probabilities[-1]
    if 'reconstructions' in outputs:
      averages['d_reconstruction'] = probabilities[1]
      layer = features[config.loss.feature_layer]
      batch = images.shape[0]
      averages['feature_error'] = losses.gaussian_nll(layer[batch:2 * batch], layer[:batch])
  return outputs, _pmean({name: jnp.mean(value) for name, value in averages.items()}, axis_name)


def decode_step(state: TrainState, latents: jax.Array, conditions: jax.Array | None = None, *,
                networks: Networks) -> jax.Array:
  """Test-time samples [B, R, R, C] of latents [B, latent] (and y [B, A]): the decoder eval_step
  uses, alone."""
  decoder = state_lib.sampling_decoder(state)
  return networks.decoder.apply({'params': decoder.params, 'batch_stats': decoder.batch_stats},
                                latents, train=False, condition=conditions)


def encode_step(state: TrainState, images: jax.Array, conditions: jax.Array | None = None, *,
                networks: Networks) -> jax.Array:
  """The encoder's means mu [B, latent] of images [B, R, R, C] (and y [B, A]), with the
  running batch statistics: the codes a prior is fitted to ex post (model/priors.py)."""
  encoder = state.encoder
  mu, _ = networks.encoder.apply({'params': encoder.params, 'batch_stats': encoder.batch_stats},
                                 images, train=False, condition=conditions)
  return mu


# ---------------------------------------------------------------- pmap wrapping
def unrolls_dispatches(platform: str) -> bool:
  """Whether K steps per dispatch run as K copies of the step rather than as a loop: on the CPU,
  where XLA:CPU ran the demo's step 80x slower inside a loop's body (docs/benchmarks.md)."""
  return platform == 'cpu'


def scanned_train_steps(state: TrainState, images: jax.Array,
                        conditions: jax.Array | None = None, unrolled: bool = False,
                        **step_options: Any) -> tuple[TrainState, Metrics]:
  """`train_step` over K batches in one call: images [K, B, R, R, C] (conditions [K, B, A] or
  None) -> (the state after K steps, each metric stacked [K]). Each step is the same update as
  train_step's, gating included, in one lax.scan: a loop, or K copies of the step if `unrolled`."""
  def one_step(state, batch):
    return train_step(state, *batch, **step_options)
  return lax.scan(one_step, state, (images, conditions), unroll=unrolled)


def make_pmapped_train_step(config: Any, networks: Networks, optimizers: Optimizers,
                            devices: Sequence[jax.Device] | None = None, with_r1: bool = False,
                            unrolled: bool | None = None
                            ) -> Callable[..., tuple[TrainState, Metrics]]:
  """train_step over `devices` (default: every device of every process), called as
  step(state, images, conditions); each process passes images [its local devices, B, R, R, C]
  and conditions [its local devices, B, A] for a conditional model, else None. With images
  [local devices, K, B, R, R, C] (and conditions [local devices, K, B, A]) it runs K steps in
  one call (`scanned_train_steps`), each metric stacked [K]; each K is compiled once, unrolled
  as `unrolled` says (None: `unrolls_dispatches` of the devices' platform). The result
  is jax.pmap's own function, so `.lower(...)` works on it (benchmarks/train_step.py). with_r1:
  the executable of R1's lazy steps (`train_step`), which the loop calls alone, one step each.

  The networks must be built with axis_name=DEVICE_AXIS. The state goes in and comes out unmapped
  (in_axes / out_axes None: it is identical on every device) and, in a single-process run, is
  donated, so its buffers are reused for the new state.
  """
  options = dict(config=config, networks=networks, optimizers=optimizers, axis_name=DEVICE_AXIS,
                 with_r1=with_r1)
  if unrolled is None:
    unrolled = unrolls_dispatches(devices[0].platform if devices else jax.default_backend())

  def step(state, images, conditions):
    if images.ndim == 5:                     # [K, B, R, R, C] on this device
      return scanned_train_steps(state, images, conditions, unrolled, **options)
    return train_step(state, images, conditions, **options)

  # Donation is for one process only: with several, pmap reshards the unmapped state across
  # processes on entry and jax 0.10 then deletes buffers that the next step's state still uses.
  donate = (0,) if jax.process_count() == 1 else ()
  return jax.pmap(step, axis_name=DEVICE_AXIS, in_axes=(None, 0, 0), out_axes=(None, None),
                  donate_argnums=donate, devices=devices)


def make_pmapped_eval_step(config: Any, networks: Networks,
                           devices: Sequence[jax.Device] | None = None
                           ) -> Callable[..., tuple[dict[str, jax.Array], Metrics]]:
  """eval_step over `devices`, called as step(state, images, prior_latents, conditions) with
  conditions None for an unconditional model: the inputs and the output images have a leading
  device axis; the averages come back once, as (images, averages)."""
  step = functools.partial(eval_step, config=config, networks=networks, axis_name=DEVICE_AXIS)
  return jax.pmap(step, axis_name=DEVICE_AXIS, in_axes=(None, 0, 0, 0), out_axes=(0, None),
                  devices=devices)


def make_pmapped_encode_step(networks: Networks, devices: Sequence[jax.Device] | None = None
                             ) -> Callable[..., jax.Array]:
  """encode_step over `devices`, called as step(state, images, conditions): images (and the
  codes [D, B, latent] it returns) with a leading device axis."""
  return jax.pmap(functools.partial(encode_step, networks=networks), axis_name=DEVICE_AXIS,
                  in_axes=(None, 0, 0), devices=devices)


def make_pmapped_decode_step(networks: Networks, devices: Sequence[jax.Device] | None = None
                             ) -> Callable[..., jax.Array]:
  """decode_step over `devices`, called as step(state, latents, conditions), with a leading
  device axis."""
  return jax.pmap(functools.partial(decode_step, networks=networks), axis_name=DEVICE_AXIS,
                  in_axes=(None, 0, 0), devices=devices)
