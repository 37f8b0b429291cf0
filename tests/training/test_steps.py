"""The train step: the decoder's reuse of the discriminator's pullback, GAN weights, N devices =
1 device, gating, stability, and learning (the passes' gradients: test_passes.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build, build_from, needs_eight_devices, tiny_config
from step_inputs import (BATCH, assert_same_updates, assert_trees_close, conditions, images,
                         step_gradients)

from vaegan_jax.sharding import DEVICE_AXIS
from vaegan_jax.training import steps


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


def run_pmapped(devices, steps_to_run=2, kind='vaegan', passes_choice='separate',
                options=False):
  config = tiny_config(kind)
  config.model.passes = passes_choice
  if options:            # [ours]: spectral norm, the decoder's EMA, R1 on the first step only
    config.model.spectral_norm = True
    config.decoder_ema_decay = 0.9
    config.loss.update(r1_weight=0.5, r1_every=2)
  config, networks, optimizers, state = build_from(config, axis_name=DEVICE_AXIS)
  train_steps = [steps.make_pmapped_train_step(config, networks, optimizers, devices=devices,
                                               with_r1=with_r1) for with_r1 in (False, True)]
  all_metrics = []
  for step in range(steps_to_run):
    x = images(seed=step).reshape(len(devices), BATCH // len(devices), 16, 16, 3)
    y = conditions(config, seed=step)
    y = None if y is None else y.reshape(len(devices), BATCH // len(devices), -1)
    with_r1 = options and step % config.loss.r1_every == 0
    state, metrics = train_steps[with_r1](state, x, y)
    all_metrics.append(metrics)
  return jax.device_get(state), jax.device_get(all_metrics)


@needs_eight_devices
@pytest.mark.parametrize('kind,passes_choice,options', [
    ('vaegan', 'separate', False), ('vae', 'separate', False), ('gan', 'separate', False),
    ('vaegan,conditional', 'separate', False), ('vaegan', 'joint', True)])
def test_eight_devices_make_the_same_update_as_one(kind, passes_choice, options):
  one_state, one_metrics = run_pmapped(jax.devices()[:1], kind=kind, passes_choice=passes_choice,
                                       options=options)
  eight_state, eight_metrics = run_pmapped(jax.devices()[:8], kind=kind,
                                           passes_choice=passes_choice, options=options)
  assert int(eight_state.step) == 2
  # The GAN baseline's float32 states differ between one device and 8 by up to 1.3e-3 of each
  # leaf's largest value on an Intel Xeon (vaegan: 6e-6; the GAN passed at 1e-4 on AMD EPYC).
  # That is rounding: the same two steps computed in float64 throughout agree to 3e-15 (gan)
  # and 2e-14 (vaegan) (2026-12-02, an ad-hoc run). The GAN's gradients come only through the
  # discriminator and nearly cancel in many elements, and RMSProp scales each to a full-size
  # update. A real disagreement (noise, statistics) is O(1). The VAE's second step does the same
  # on an Intel Xeon with AMX (2026-12-07, with and without that day's change): its decoder's
  # first batch-norm bias differed by 1.5% of the leaf's largest value, after a first step in
  # which every leaf agreed to 2.3e-6 of its own. So the VAE's first step is held to the tight
  # tolerance, and its second to 3% of each leaf's largest value.
  if kind == 'vae':
    first = [run_pmapped(devices, steps_to_run=1, kind=kind)[0]
             for devices in (jax.devices()[:1], jax.devices()[:8])]
    assert_trees_close(first[1], first[0], rtol=1e-4, atol=2e-6)
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(eight_state),
                                 jax.tree.leaves(one_state)):
      scale = np.max(np.abs(want), initial=0.0)
      assert np.max(np.abs(got - want), initial=0.0) <= 3e-2 * scale, jax.tree_util.keystr(path)
  else:
    rtol, atol = (5e-3, 1e-5) if kind == 'gan' else (1e-4, 2e-6)
    assert_trees_close(eight_state, one_state, rtol=rtol, atol=atol)
  assert_trees_close(eight_metrics, one_metrics, rtol=1e-4, atol=1e-5)


@needs_eight_devices
@pytest.mark.parametrize('unrolled', [False, True], ids=['loop', 'unrolled'])
@pytest.mark.parametrize('kind', ['vaegan,conditional'])    # y, and the gating per step
def test_four_steps_in_one_dispatch_equal_four_dispatches_of_one(kind, unrolled):
  """steps_per_dispatch: one call over [D, K, B, ...] (a lax.scan, as a loop or unrolled) makes
  the updates and the per-step metrics, gating included, of K calls of one step each (different
  executables, so to float32 tolerance), on 8 devices."""
  config, networks, optimizers, state = build_from(tiny_config(kind), axis_name=DEVICE_AXIS)
  train_step = steps.make_pmapped_train_step(config, networks, optimizers,
                                             devices=jax.devices()[:8], unrolled=unrolled)
  per_device = lambda array: array.reshape(8, BATCH // 8, *array.shape[1:])
  xs = [per_device(images(seed=step)) for step in range(4)]
  ys = [None if conditions(config, seed=step) is None else
        per_device(conditions(config, seed=step)) for step in range(4)]

  initial = jax.tree.map(lambda leaf: jnp.array(leaf, copy=True), state)   # the step donates it
  state_before = jax.device_get(state)
  one_at_a_time, metrics = state, []
  for x, y in zip(xs, ys):
    one_at_a_time, step_metrics = train_step(one_at_a_time, x, y)
    metrics.append(step_metrics)
  stacked = lambda parts: None if parts[0] is None else jnp.stack(parts, axis=1)
  scanned, scanned_metrics = train_step(initial, stacked(xs), stacked(ys))

  assert int(scanned.step) == 4
  assert_same_updates(jax.device_get(state_before), jax.device_get(scanned),
                      jax.device_get(one_at_a_time))
  assert set(scanned_metrics) == set(metrics[0])
  for name, values in scanned_metrics.items():
    assert values.shape == (4,), name
    np.testing.assert_allclose(values, [float(step[name]) for step in metrics], rtol=1e-3,
                               atol=1e-5, err_msg=name)
  assert 'skipped_discriminator' in scanned_metrics     # the gating decided per step, inside


def test_several_steps_per_dispatch_run_unrolled_on_the_cpu_and_as_a_loop_elsewhere():
  """On the CPU, K steps per dispatch are K copies of the step: XLA:CPU ran them 80x slower as
  a loop (docs/benchmarks.md). GPUs and TPUs keep the loop, whose compile time does not grow
  with K."""
  config, networks, optimizers, state = build_from(tiny_config('vaegan'), axis_name=DEVICE_AXIS)
  devices = jax.local_devices()[:1]
  assert devices[0].platform == 'cpu'
  assert not steps.unrolls_dispatches('gpu') and not steps.unrolls_dispatches('tpu')

  def loops(dispatch, **options):
    step = steps.make_pmapped_train_step(config, networks, optimizers, devices=devices, **options)
    batch = images()[None] if dispatch == 1 else jnp.stack([images()] * dispatch)[None]
    return step.lower(state, batch, None).as_text().count('stablehlo.while')

  within_one_step = loops(1)                  # the step's own, in functions that each copy calls
  assert loops(4) == within_one_step                            # the CPU's default
  assert loops(4, unrolled=False) == within_one_step + 1


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


def test_the_decoder_ema_is_the_hand_computed_average_and_changes_nothing_else():
  ends, decoders = {}, []
  for decay in (0.0, 0.9):
    config = tiny_config('vaegan')
    config.decoder_ema_decay = decay
    config, networks, optimizers, state = build_from(config)
    train_step = jax.jit(functools.partial(steps.train_step, config=config, networks=networks,
                                           optimizers=optimizers, axis_name=None))
    decoders = [state.decoder]
    for seed in range(3):
      state, _ = train_step(state, images(seed))
      decoders.append(state.decoder)
    ends[decay] = state
  plain, averaged = ends[0.0], ends[0.9]
  assert plain.decoder_ema is None
  # The EMA is read by nothing that trains: the three networks take the same steps.
  assert_trees_close(averaged.replace(decoder_ema=None), plain, rtol=0, atol=0)
  # decay^3 * init + (1 - decay) * (decay^2 * d1 + decay * d2 + d3), params and batch stats.
  weights = (0.9 ** 3, 0.1 * 0.9 ** 2, 0.1 * 0.9, 0.1)
  for part in ('params', 'batch_stats'):
    expected = jax.tree.map(lambda *leaves: sum(w * leaf for w, leaf in zip(weights, leaves)),
                            *[getattr(decoder, part) for decoder in decoders])
    assert_trees_close(getattr(averaged.decoder_ema, part), expected, rtol=1e-6, atol=1e-7)
  # Test-time samples come from the average.
  z = jax.random.normal(jax.random.key(5), (4, config.model.latent_dim))
  outputs, _ = steps.eval_step(averaged, images()[:4], z, config=config, networks=networks,
                               axis_name=None)
  ema = averaged.decoder_ema
  np.testing.assert_array_equal(outputs['samples'], networks.decoder.apply(
      {'params': ema.params, 'batch_stats': ema.batch_stats}, z, train=False))


def test_the_decoder_ema_copies_the_decoder_until_its_start_step_then_averages():
  config = tiny_config('vaegan')
  config.decoder_ema_decay, config.decoder_ema_start = 0.9, 2
  config, networks, optimizers, state = build_from(config)
  train_step = jax.jit(functools.partial(steps.train_step, config=config, networks=networks,
                                         optimizers=optimizers, axis_name=None))
  decoders, averages = [], []
  for seed in range(3):
    state, _ = train_step(state, images(seed))
    decoders.append(state.decoder)
    averages.append(state.decoder_ema)
  # Steps 0 and 1 come before the start: the average is the decoder itself.
  for decoder, average in zip(decoders[:2], averages[:2]):
    assert_trees_close(average.params, decoder.params, rtol=0, atol=0)
  # Step 2 averages from there: 0.9 * d2 + 0.1 * d3.
  expected = jax.tree.map(lambda a, b: 0.9 * a + 0.1 * b, decoders[1].params, decoders[2].params)
  assert_trees_close(averages[2].params, expected, rtol=1e-6, atol=1e-7)
  assert not np.allclose(jax.tree.leaves(averages[2].params)[0],
                         jax.tree.leaves(decoders[2].params)[0])


def test_spectral_norm_keeps_the_vectors_of_the_kept_pass_and_the_feature_loss_works():
  config = tiny_config('vaegan')
  config.model.spectral_norm = True
  config, networks, optimizers, state = build_from(config)
  new_state, metrics = jax.jit(functools.partial(
      steps.train_step, config=config, networks=networks, optimizers=optimizers,
      axis_name=None))(state, images())
  assert np.isfinite(metrics['llike']) and metrics['llike'] > 0        # L_llike at Dis_l
  unit = lambda vector: vector / np.linalg.norm(vector)
  for layer in ('conv1', 'conv2', 'dense1', 'dense2'):
    # One power iteration on the kernel the step's passes used, from the u the state held.
    kernel = np.asarray(state.discriminator.params[layer]['kernel'])
    kernel = kernel.reshape(-1, kernel.shape[-1])
    u = np.asarray(state.discriminator.batch_stats[layer]['spectral_u'])
    np.testing.assert_allclose(new_state.discriminator.batch_stats[layer]['spectral_u'],
                               unit(kernel.T @ unit(kernel @ u)), rtol=1e-5, atol=1e-6)


def test_r1_is_half_the_squared_gradient_norm_of_the_summed_logits():
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 2))
  w = jax.random.normal(jax.random.key(1), (32,))
  linear = lambda images: images.reshape(3, -1) @ w             # d/dx_i = w for every i
  np.testing.assert_allclose(steps.r1_penalty(linear, x), 0.5 * 3 * jnp.sum(w ** 2), rtol=1e-6)
  square = lambda images: jnp.sum(images ** 2, axis=(1, 2, 3))   # d/dx = 2x
  np.testing.assert_allclose(steps.r1_penalty(square, x), 2 * jnp.sum(x ** 2), rtol=1e-6)


def test_r1_gradients_match_plain_autodiff_and_change_only_the_discriminator():
  config = tiny_config('vaegan')
  config.loss.update(r1_weight=0.5, r1_every=2)
  config, networks, optimizers, state = build_from(config)
  x = images()
  gradient, value = steps.r1_gradients(state, x, None, config=config, networks=networks,
                                       axis_name=None)
  # The same penalty through XLA's own conv gradients (no custom VJPs, which the step's CPU
  # convolutions use), by its definition, times r1_weight * r1_every.
  config.model.conv_gradients = 'xla'
  plain = build_from(config)[1].discriminator

  def penalty(params):
    def summed(images):
      (logits, _), _ = plain.apply({'params': params,
                                    'batch_stats': state.discriminator.batch_stats}, images,
                                   train=True, mutable=['batch_stats'])
      return jnp.sum(logits)
    return 0.5 * jnp.sum(jax.grad(summed)(x) ** 2)
  expected_value, expected = jax.value_and_grad(penalty)(state.discriminator.params)
  assert_trees_close(gradient, jax.tree.map(lambda leaf: 0.5 * 2 * leaf, expected),
                     rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(value, expected_value / BATCH, rtol=1e-4)
  # In a step with R1 it joins only the discriminator's gradient; between its lazy steps the
  # step is the one without R1, reporting r1 = 0.
  config.model.conv_gradients = 'auto'
  ends, metrics = {}, {}
  for weight, with_r1 in ((0.0, False), (0.5, False), (0.5, True)):
    config.loss.r1_weight = weight
    ends[weight, with_r1], metrics[weight, with_r1] = jax.jit(functools.partial(
        steps.train_step, config=config, networks=networks, optimizers=optimizers,
        axis_name=None, with_r1=with_r1))(state, x)
  assert float(metrics[0.5, True]['r1']) > 0 and float(metrics[0.5, False]['r1']) == 0
  assert_trees_close(ends[0.5, False], ends[0.0, False], rtol=0, atol=0)
  for name in ('encoder', 'decoder'):
    assert_trees_close(getattr(ends[0.5, True], name), getattr(ends[0.0, False], name),
                       rtol=0, atol=0)
  assert not np.allclose(ends[0.5, True].discriminator.params['conv2']['kernel'],
                         ends[0.0, False].discriminator.params['conv2']['kernel'])


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
