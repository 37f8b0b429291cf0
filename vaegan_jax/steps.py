"""The per-device train and eval steps, and their pmap wrapping.

One forward pass runs the three networks (Algorithm 1 of the paper):

    mu, logvar = Enc(x);  z = mu + eps * exp(logvar / 2);  zp ~ N(0, I)
    [x~; xp] = Dec([z; zp])
    logits, Dis_l = Dis([x; x~; xp])

A conditional model (models.py) gives every network the batch's attributes y as well: Enc(x, y),
Dec([z; zp], [y; y]) and Dis([x; x~; xp], [y; y; y]); prior samples are drawn for the batch's own
attributes, so D sees real and generated images under the same distribution of y.

The loss terms are small functions of those outputs. Each network's gradient is then pulled back
from that one forward pass (`jax.vjp`), with exactly the routing of Algorithm 1:

    encoder        L_prior + L_llike              (never a GAN gradient)
    decoder        gamma * L_llike + L_GAN_dec     (saturating: L_GAN_dec = -L_GAN, unweighted)
    discriminator  L_GAN                           (never an L_llike gradient)

Gradients are pulled back per loss term: the discriminator's backward pass for L_GAN yields its
kernel gradients and d(L_GAN)/d(fakes); a second one yields d(L_llike)/d(fakes), which the
encoder and decoder share; a third one, for the decoder's GAN term, only when that term is not
proportional to the discriminator's (unequal real/fake weights, or non-saturating). Under jit,
the parts of a pullback that nobody uses (kernel gradients of a pass taken for image gradients)
are dead code and are removed by XLA.

Model kinds: 'vae' replaces L_llike by the pixel-wise Gaussian NLL and has no discriminator;
'vae_disl' trains the decoder on L_llike alone while the discriminator still trains as a GAN;
'gan' has no encoder. Under pmap the per-device sums add up (psum) to the global-batch sums, and
batch norm averages its statistics over the device axis, so N devices make the same update as
one device on the same global batch.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax import lax

from vaegan_jax import losses
from vaegan_jax.models import Networks
from vaegan_jax.sharding import DEVICE_AXIS
from vaegan_jax.state import NetworkState, Optimizers, TrainState

Metrics = dict[str, jax.Array]
# Every loss term a model kind may have, in the order the console shows them.
LOSS_TERMS = ('prior', 'llike', 'pixel', 'decoder_gan', 'discriminator')


# ---------------------------------------------------------------- device-axis helpers
def _axis_size(axis_name: str | None) -> int:
  return 1 if axis_name is None else lax.axis_size(axis_name)


def _axis_index(axis_name: str | None) -> jax.Array:
  return jnp.zeros((), jnp.int32) if axis_name is None else lax.axis_index(axis_name)


def _psum(tree: Any, axis_name: str | None) -> Any:
  return tree if axis_name is None else lax.psum(tree, axis_name)


def _pmean(tree: Any, axis_name: str | None) -> Any:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


# ---------------------------------------------------------------- randomness
def per_example_normal(key: jax.Array, example_ids: jax.Array, size: int) -> jax.Array:
  """N(0, I) draws of `size` for each global example index: [len(example_ids), size].

  Each example's noise depends only on the key and its index in the global batch, so devices
  draw different noise and any number of devices draws the same noise for the same batch.
  """
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (size,)))(example_ids)


# ---------------------------------------------------------------- loss terms
def loss_objectives(config: Any) -> dict[str, dict[str, float]]:
  """The weight of each loss term in each network's objective (Algorithm 1 and the kinds)."""
  kind, gamma = config.model.kind, config.loss.gamma
  objectives = {
      'vaegan': dict(encoder={'prior': 1.0, 'llike': 1.0},
                     decoder={'llike': gamma, 'decoder_gan': 1.0},
                     discriminator={'discriminator': 1.0}),
      'vae_disl': dict(encoder={'prior': 1.0, 'llike': 1.0},
                       decoder={'llike': 1.0},
                       discriminator={'discriminator': 1.0}),
      'vae': dict(encoder={'prior': 1.0, 'pixel': 1.0}, decoder={'pixel': 1.0}),
      'gan': dict(decoder={'decoder_gan': 1.0}, discriminator={'discriminator': 1.0}),
  }
  return objectives[kind]


def shared_gan_chain_ratio(config: Any) -> float | None:
  """c with d(L_GAN_dec) = c * d(L_Dis) at every logit, or None when they are not proportional.

  The saturating decoder term is minus the unweighted cross-entropy; with equal real and fake
  weights w (the March code, and any 'gan' run with equal weights) it is -1/w times the
  discriminator's loss, so the decoder's image gradient comes from the discriminator's own
  backward pass instead of a second one through the discriminator.
  """
  loss_config = config.loss
  if loss_config.decoder_gan != 'saturating' or loss_config.real_weight != loss_config.fake_weight:
    return None
  return -1.0 / loss_config.real_weight


def split_logits(config: Any, logits: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
  """(real [B], fakes shown to the discriminator [F, B]) from the logits of [x; (x~;) xp]."""
  real_logits, fake_logits = logits[:batch], logits[batch:].reshape(-1, batch)
  if config.model.kind != 'gan' and config.loss.fakes == 'prior':
    fake_logits = fake_logits[1:]                         # reconstructions are not shown
  return real_logits, fake_logits


def per_example_losses(config: Any, images: jax.Array, mu: jax.Array | None,
                       log_variance: jax.Array | None, fake_images: jax.Array,
                       logits: jax.Array | None, features: jax.Array | None) -> dict[str, jax.Array]:
  """Every loss term the model kind uses, per local example ([B] each).

  Args:
    images: [B, R, R, C] data.
    mu, log_variance: [B, latent] from the encoder, or None ('gan').
    fake_images: [2B, R, R, C] = [reconstructions; prior samples], or [B, ...] prior samples.
    logits: [B + len(fake_images)] discriminator logits of [images; fake_images], or None.
    features: Dis_l of the same images, [B + len(fake_images), ...], or None.
  """
  loss_config, kind = config.loss, config.model.kind
  batch = images.shape[0]
  terms = {}
  if mu is not None:
    terms['prior'] = losses.kl_to_standard_normal(mu, log_variance)
  if kind == 'vae':
    terms['pixel'] = losses.gaussian_nll(fake_images[:batch], images)
  if kind in ('vaegan', 'vae_disl'):
    terms['llike'] = losses.gaussian_nll(features[batch:2 * batch], features[:batch])
  if logits is not None:
    real_logits, fake_logits = split_logits(config, logits, batch)
    form, eps = loss_config.gan_form, loss_config.gan_eps
    terms['discriminator'] = losses.discriminator_loss(
        real_logits, fake_logits, loss_config.real_weight, loss_config.fake_weight, form, eps)
    terms['decoder_gan'] = losses.decoder_gan_loss(real_logits, fake_logits,
                                                   loss_config.decoder_gan, form, eps)
  return terms


# ---------------------------------------------------------------- gradients
def _vjp_network(module: Any, network: NetworkState, inputs: jax.Array,
                 postprocess: Callable[[Any], Any] = lambda outputs: outputs,
                 condition: jax.Array | None = None):
  """Applies a network in train mode (with the attributes `condition`, a constant), then
  `postprocess` to its outputs.

  Returns (outputs, pullback over (params, inputs), new batch statistics).
  """
  def apply(params, x):
    outputs, updates = module.apply({'params': params, 'batch_stats': network.batch_stats}, x,
                                    train=True, condition=condition, mutable=['batch_stats'])
    return postprocess(outputs), updates['batch_stats']

  return jax.vjp(apply, network.params, inputs, has_aux=True)


def _repeat(condition: jax.Array | None, times: int) -> jax.Array | None:
  """y for `times` stacked copies of the batch ([y; y; ...]), or None."""
  return None if condition is None else jnp.tile(condition, (times, 1))


def compute_gradients(state: TrainState, images: jax.Array, conditions: jax.Array | None = None,
                      *, config: Any, networks: Networks, axis_name: str | None = DEVICE_AXIS
                      ) -> tuple[dict[str, Any], dict[str, Any], dict[str, jax.Array], jax.Array]:
  """Per-network gradients of the local examples' losses, from one forward pass.

  Args:
    state: the train state (read only).
    images: [B, R, R, C] local batch in [-1, 1].
    conditions: [B, A] attributes in {-1, +1} for a conditional model, else None.
  Returns:
    (gradients, new batch statistics, per-example loss terms, discriminator logits or None), the
    first two keyed by network name. Gradients are of this device's part of the global sum; add
    them over devices to get the global gradient.
  """
  model_config = config.model
  batch = images.shape[0]
  step_key = jax.random.fold_in(state.rng, state.step)
  example_ids = _axis_index(axis_name) * batch + jnp.arange(batch)
  prior_latents = per_example_normal(jax.random.fold_in(step_key, 0), example_ids,
                                     model_config.latent_dim)
  new_batch_stats = {}

  # Forward: encoder (with the reparameterisation inside, so one pullback reaches mu and logvar).
  mu = log_variance = None
  if networks.encoder is not None:
    posterior_noise = per_example_normal(jax.random.fold_in(step_key, 1), example_ids,
                                         model_config.latent_dim)

    def reparameterise(moments):
      mu, log_variance = moments
      return mu, log_variance, mu + posterior_noise * jnp.exp(0.5 * log_variance)

    (mu, log_variance, latents), encoder_pullback, new_batch_stats['encoder'] = _vjp_network(
        networks.encoder, state.encoder, images, reparameterise, conditions)
    latents = jnp.concatenate([latents, prior_latents])
  else:
    latents = prior_latents

  # Forward: decoder on [z; zp] together, discriminator on [x; x~; xp] together.
  fake_images, decoder_pullback, new_batch_stats['decoder'] = _vjp_network(
      networks.decoder, state.decoder, latents,
      condition=_repeat(conditions, latents.shape[0] // batch))
  logits = features = discriminator_pullback = None
  if networks.discriminator is not None:
    feature_layer = config.loss.feature_layer
    (logits, features), discriminator_pullback, new_batch_stats['discriminator'] = _vjp_network(
        networks.discriminator, state.discriminator, jnp.concatenate([images, fake_images]),
        lambda outputs: (outputs[0], outputs[1][feature_layer]),
        _repeat(conditions, 1 + fake_images.shape[0] // batch))

  # Loss terms, and their cotangents for each network's objective.
  global_batch_size = batch * _axis_size(axis_name)
  reduction = config.loss.reduction

  def reduced_losses(mu, log_variance, fake_images, logits, features):
    terms = per_example_losses(config, images, mu, log_variance, fake_images, logits, features)
    return {name: losses.reduce_over_batch(value, reduction, global_batch_size)
            for name, value in terms.items()}, terms

  head_inputs = (mu, log_variance, fake_images, logits, features)
  totals, heads_pullback, terms = jax.vjp(reduced_losses, *head_inputs, has_aux=True)
  objectives = loss_objectives(config)

  def term_gradients(term):
    """d(term)/d(mu, log_variance, fake_images, logits, features)."""
    return heads_pullback({name: jnp.asarray(name == term, total.dtype)
                           for name, total in totals.items()})

  gradients, fake_image_gradients = {}, {}
  if networks.discriminator is not None:
    # One backward pass through Dis gives its kernel gradients and d(L_GAN)/d(fakes).
    _, _, _, logits_grad, features_grad = term_gradients('discriminator')
    gradients['discriminator'], gan_images_grad = discriminator_pullback(
        (logits_grad, features_grad))
    ratio = shared_gan_chain_ratio(config)
    if 'decoder_gan' in totals and ratio is not None:
      fake_image_gradients['decoder_gan'] = ratio * gan_images_grad[batch:]

  def fake_image_gradient(term):
    """d(term)/d(fake images): through the discriminator, or directly (pixel loss)."""
    if term not in fake_image_gradients:
      _, _, direct, logits_grad, features_grad = term_gradients(term)
      if discriminator_pullback is not None:
        direct = direct + discriminator_pullback((logits_grad, features_grad))[1][batch:]
      fake_image_gradients[term] = direct
    return fake_image_gradients[term]

  def objective_image_gradient(network):
    return sum(weight * fake_image_gradient(term)
               for term, weight in objectives[network].items() if term != 'prior')

  gradients['decoder'], _ = decoder_pullback(objective_image_gradient('decoder'))
  if networks.encoder is not None:
    mu_grad, log_variance_grad, _, _, _ = term_gradients('prior')
    _, latents_grad = decoder_pullback(objective_image_gradient('encoder'))
    gradients['encoder'], _ = encoder_pullback((mu_grad, log_variance_grad, latents_grad[:batch]))

  return gradients, new_batch_stats, terms, logits


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
               axis_name: str | None = DEVICE_AXIS) -> tuple[TrainState, Metrics]:
  """One VAE/GAN update of all three networks on this device's part of the global batch.

  Args:
    state: replicated train state.
    images: [B, R, R, C] local batch in [-1, 1].
    conditions: [B, A] attributes in {-1, +1} for a conditional model, else None.
  Returns:
    (new state, metrics); the metrics are global-batch averages, identical on every device:
    per-example loss terms, D(x), D(x~), D(xp) (mean probabilities), the mean real and fake
    cross-entropies the gating reads, whether each gated network was skipped (1.0) or not,
    each network's gradient norm and learning rate.
  """
  gradients, new_batch_stats, terms, logits = compute_gradients(
      state, images, conditions, config=config, networks=networks, axis_name=axis_name)
  gradients = _psum(gradients, axis_name)
  batch = images.shape[0]
  metrics = {name: jnp.mean(value) for name, value in terms.items()}
  update = {name: jnp.array(True) for name in gradients}
  if logits is not None:
    probabilities = jax.nn.sigmoid(logits).reshape(-1, batch)   # [real, (reconstruction,) prior]
    metrics['d_real'] = jnp.mean(probabilities[0])
    metrics['d_prior'] = jnp.mean(probabilities[-1])
    if probabilities.shape[0] == 3:
      metrics['d_reconstruction'] = jnp.mean(probabilities[1])
    real_logits, fake_logits = split_logits(config, logits, batch)
    form, eps = config.loss.gan_form, config.loss.gan_eps
    metrics['real_bce'] = jnp.mean(losses.neg_log_real(real_logits, form, eps))
    metrics['fake_bce'] = jnp.mean(losses.neg_log_fake(fake_logits, form, eps))
  metrics = _pmean(metrics, axis_name)
  if logits is not None and config.loss.gating:
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
  new_state = state.replace(step=state.step + 1, **new_networks)
  return new_state, metrics


# ---------------------------------------------------------------- evaluation
def eval_step(state: TrainState, images: jax.Array, prior_latents: jax.Array,
              conditions: jax.Array | None = None, *, config: Any, networks: Networks,
              axis_name: str | None = DEVICE_AXIS) -> tuple[dict[str, jax.Array], Metrics]:
  """Test-time outputs with running batch statistics; the encoder returns mu (the Feb code).

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
    network = getattr(state, name)
    return getattr(networks, name).apply(
        {'params': network.params, 'batch_stats': network.batch_stats}, inputs, train=False,
        condition=_repeat(conditions, copies))

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


# ---------------------------------------------------------------- pmap wrapping
def make_pmapped_train_step(config: Any, networks: Networks, optimizers: Optimizers,
                            devices: Sequence[jax.Device] | None = None
                            ) -> Callable[..., tuple[TrainState, Metrics]]:
  """train_step over `devices` (default: every device of every process), called as
  step(state, images, conditions); each process passes images [its local devices, B, R, R, C]
  and conditions [its local devices, B, A] for a conditional model, else None. The result is
  jax.pmap's own function, so `.lower(...)` works on it (benchmarks/train_step.py).

  The networks must be built with axis_name=DEVICE_AXIS. The state goes in and comes out unmapped
  (in_axes / out_axes None: it is identical on every device) and, in a single-process run, is
  donated, so its buffers are reused for the new state.
  """
  step = functools.partial(train_step, config=config, networks=networks,
                           optimizers=optimizers, axis_name=DEVICE_AXIS)
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
