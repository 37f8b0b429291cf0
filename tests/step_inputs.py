"""For the tests of the train step and its passes: random inputs, the step's own noise draws,
one network application in train mode, and closeness of trees."""
import jax
import jax.numpy as jnp
import numpy as np

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


def assert_same_updates(initial, got, want, fraction=0.02):
  """got and want moved every leaf of `initial` by the same amount, to `fraction` of the largest
  move. For states reached by different executables over several RMSProp steps: RMSProp's
  normalised steps turn float32 rounding in tiny gradients into differences far above an
  absolute tolerance, while a wrong update (another batch, noise or learning rate) moves the
  leaves by as much as the update itself."""
  paths = jax.tree_util.tree_leaves_with_path(initial)
  for (path, start), a, b in zip(paths, jax.tree.leaves(got), jax.tree.leaves(want)):
    start, a, b = (np.asarray(leaf, np.float64) for leaf in (start, a, b))
    scale = np.max(np.abs(b - start), initial=0.0)
    assert np.max(np.abs(a - b), initial=0.0) <= fraction * scale + 1e-9, jax.tree_util.keystr(path)
