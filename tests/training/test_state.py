"""The three optimizers against hand-computed RMSProp steps, and the learning-rate schedules."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import build

from vaegan_jax.configs import celeba64
from vaegan_jax.training import state


def test_rmsprop_step_with_deeppys_weight_decay_on_the_authors_kernels():
  opt_config = celeba64.optimizer_config(learning_rate=0.1)
  opt_config.weight_decay = 0.01
  optimizer = state.make_optimizer(opt_config)
  leaf = lambda value: {'kernel': jnp.array([value]), 'bias': jnp.array([value])}
  params = {'conv': leaf(2.0), 'conv_norm': {'scale': jnp.array([2.0])}, 'mu': leaf(2.0),
            'log_variance': leaf(2.0)}
  grads = {'conv': leaf(0.5), 'conv_norm': {'scale': jnp.array([0.5])}, 'mu': leaf(0.5),
           'log_variance': leaf(0.5)}
  opt_state = optimizer.init(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  # Kernel: DeepPy adds 2 * wd * w, g = 0.5 + 2 * 0.01 * 2 = 0.54; ms = 0.1 g^2 (ms starts at
  # 0); step = lr g / (sqrt(ms) + 1e-8).
  g = 0.54
  np.testing.assert_allclose(updates['conv']['kernel'], [-0.1 * g / (np.sqrt(0.1 * g * g) + 1e-8)],
                             rtol=1e-6)
  g_no_decay = [-0.1 * 0.5 / (np.sqrt(0.1 * 0.25) + 1e-8)]
  # Biases, BN scale, and the encoder's mean and log-variance layers: no decay.
  for leaf in (updates['conv']['bias'], updates['conv_norm']['scale'], updates['mu']['kernel'],
               updates['log_variance']['kernel']):
    np.testing.assert_allclose(leaf, g_no_decay, rtol=1e-6)
  # A first step's size hardly depends on g (lr g / sqrt(0.1 g^2)); the second one shows the
  # decay: raw gradient 0.1, ms = 0.9 ms + 0.1 g^2.
  second = lambda g1, g2: [-0.1 * g2 / (np.sqrt(0.9 * 0.1 * g1**2 + 0.1 * g2**2) + 1e-8)]
  updates, _ = optimizer.update(jax.tree.map(lambda g: g / 5, grads), opt_state, params)
  np.testing.assert_allclose(updates['conv']['kernel'], second(0.54, 0.1 + 0.04), rtol=1e-6)
  for leaf in (updates['conv']['bias'], updates['mu']['kernel'], updates['log_variance']['kernel']):
    np.testing.assert_allclose(leaf, second(0.5, 0.1), rtol=1e-6)


def test_adam_steps_with_the_gan_betas_by_hand():
  """optimizer.X.name='adam' [ours]: Adam's bias-corrected steps with b1 = 0.5, b2 = 0.999 and
  the same coupled weight decay on the kernels."""
  opt_config = celeba64.optimizer_config(learning_rate=0.1)
  opt_config.update(name='adam', weight_decay=0.01)
  optimizer = state.make_optimizer(opt_config)
  params = {'conv': {'kernel': jnp.array([2.0]), 'bias': jnp.array([2.0])}}
  grads = {'conv': {'kernel': jnp.array([0.5]), 'bias': jnp.array([0.5])}}
  opt_state = optimizer.init(params)
  moments = {'kernel': (0.0, 0.0), 'bias': (0.0, 0.0)}
  for step, scale in enumerate((1.0, 0.2), start=1):
    updates, opt_state = optimizer.update(jax.tree.map(lambda g: g * scale, grads), opt_state,
                                          params)
    for name, decay in (('kernel', 2 * 0.01 * 2.0), ('bias', 0.0)):
      g = 0.5 * scale + decay
      m, v = moments[name]
      m, v = 0.5 * m + 0.5 * g, 0.999 * v + 0.001 * g * g
      moments[name] = m, v
      m_hat, v_hat = m / (1 - 0.5 ** step), v / (1 - 0.999 ** step)
      np.testing.assert_allclose(updates['conv'][name], [-0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)],
                                 rtol=1e-5, err_msg=f'{name}, step {step}')


def test_anneal_schedule_is_the_authors_per_epoch_formula():
  opt_config = ml_collections.ConfigDict(dict(
      schedule='anneal', learning_rate=0.02 / 64, end_learning_rate=1e-5 / 64,
      anneal_power=0.75, anneal_epochs=150, steps_per_epoch=250))
  schedule = state.learning_rate_schedule(opt_config)
  start, end = 0.02 / 64, 1e-5 / 64
  for step, epoch in ((0, 0), (249, 0), (250, 1), (75 * 250 + 3, 75), (150 * 250, 150),
                      (400 * 250, 150)):
    expected = start - (epoch / 150) ** 0.75 * (start - end)
    np.testing.assert_allclose(schedule(jnp.asarray(step)), expected, rtol=1e-5)
  # Exact at both ends in float32, on every backend (the rates are a table made on the host).
  assert schedule(jnp.asarray(0)) == np.float32(start)
  assert schedule(jnp.asarray(150 * 250)) == np.float32(end)


@pytest.mark.parametrize('kind,present', [
    ('vaegan', ('encoder', 'decoder', 'discriminator')),
    ('vae', ('encoder', 'decoder')),
    ('gan', ('decoder', 'discriminator')),
])
def test_state_holds_exactly_the_networks_of_the_kind(kind, present):
  _, _, optimizers, train_state = build(kind)
  for name in state.NETWORK_NAMES:
    assert (getattr(train_state, name) is not None) == (name in present)
    assert (getattr(optimizers, name) is not None) == (name in present)
  assert int(train_state.step) == 0
  assert train_state.rng.dtype == jnp.uint32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(train_state.decoder.params))
