"""Dai & Wipf's second-stage VAE as a prior (model/second_stage.py, priors.SecondStage) [ours]."""
import jax
import numpy as np
import pytest

from vaegan_jax import folders
from vaegan_jax.model import priors, second_stage, second_stage_network


def authors_tower(layers, x):
  """build_encoder2/build_decoder2 of daib13/TwoStageVAE, written out: three ReLU dense layers,
  [x, t] concatenated, the heads."""
  t = x
  for index in range(3):
    t = np.maximum(t @ layers[f'hidden_{index}_kernel'] + layers[f'hidden_{index}_bias'], 0)
  t = np.concatenate([x, t], -1)
  return {name[:-7]: t @ layers[name] + layers[name[:-7] + '_bias']
          for name in layers if name.startswith('head') and name.endswith('_kernel')}


def test_the_loss_and_the_sampler_are_the_authors_second_stage():
  params = jax.tree.map(np.asarray, second_stage.init(jax.random.PRNGKey(0), latent_dim=5))
  params['log_gamma'] = np.float32(-0.4)
  rng = np.random.default_rng(1)
  z, noise = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(7, 5)).astype(np.float32)
  # the authors' kl_loss2 + gen_loss2, with sd_u = exp(logsd_u) and HALF_LOG_TWO_PI = 0.91893
  encoded = authors_tower(params['encoder'], z)
  mu_u, logsd_u = encoded['head_mu'], encoded['head_log_sd']
  sd_u = np.exp(logsd_u)
  z_hat = authors_tower(params['decoder'], mu_u + sd_u * noise)['head']
  gamma_z = np.exp(params['log_gamma'])
  kl_loss2 = np.sum(np.square(mu_u) + np.square(sd_u) - 2 * logsd_u - 1) / 2.0 / 7
  gen_loss2 = np.sum(np.square((z - z_hat) / gamma_z) / 2.0 + params['log_gamma'] + 0.91893) / 7
  np.testing.assert_allclose(second_stage.loss(params, z, noise), kl_loss2 + gen_loss2, rtol=1e-4)

  sampler = priors.SecondStage(params['decoder'], params['log_gamma'])
  u, n = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
  np.testing.assert_allclose(sampler.transform(u, rng.uniform(size=7), n),
                             authors_tower(params['decoder'], u)['head'] + gamma_z * n,
                             rtol=1e-5, atol=1e-5)


@pytest.fixture(scope='module')
def fitted():
  """Codes with a mean, correlations and scales from 0.3 to 2.2, and the second stage on them,
  64 wide rather than 256 (a quarter of the CPU time; the steps are the real ones)."""
  rng = np.random.default_rng(0)
  mixing = np.array([[1.0, 0, 0, 0], [0.5, 2, 0, 0], [0, -1, 0.3, 0], [0.2, 0, 0, 0.5]])
  codes = rng.normal(size=(4000, 4)) @ mixing + np.array([1.0, -2, 3, 0])
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(second_stage_network, 'WIDTH', 64)
    yield codes, priors.fit('vae2', codes, seed=0)


def test_the_second_stage_samples_have_the_codes_moments(fitted):
  codes, prior = fitted
  samples = prior.sample(20_000, seed=1).astype(np.float64)
  np.testing.assert_allclose(samples.mean(axis=0), codes.mean(axis=0), atol=0.08)
  np.testing.assert_allclose(np.cov(samples, rowvar=False), np.cov(codes, rowvar=False),
                             atol=0.15)
  assert np.exp(prior.log_gamma) < 0.6         # gamma_z fell from its initial 1, as it should


def test_a_saved_second_stage_reads_back_and_one_of_another_model_is_refused(fitted, tmp_path):
  _, prior = fitted
  assert prior.decoder['hidden_1_kernel'].shape == (64, 64)
  path = priors.fit_path(str(tmp_path), 'vae2', 3000)
  priors.save(prior, folders.Folder(str(tmp_path)), priors.fit_name('vae2', 3000))
  again = priors.load(path, 'vae2', latent_dim=4)
  np.testing.assert_array_equal(again.sample(50, seed=2), prior.sample(50, seed=2))
  with pytest.raises(priors.PriorError, match='latent size 5'):
    priors.load(path, 'vae2', latent_dim=5)
  with pytest.raises(priors.PriorError, match='is not a (saved|usable) prior fit'):
    priors.load(path, 'gaussian', latent_dim=4)          # the wrong kind of fit under a name
  halved = {name: np.asarray(value, np.float16) for name, value in prior.arrays().items()}
  folders.write_atomically(path, lambda file: np.savez(file, **halved))
  with pytest.raises(priors.PriorError, match='not float32 arrays'):
    priors.load(path, 'vae2', latent_dim=4)


def test_the_second_stage_and_the_priors_do_not_import_each_other():
  """Issue 47: model/priors.py and model/second_stage.py imported each other; the network they
  share is a module of its own, and second_stage.py reaches no prior."""
  import subprocess
  import sys
  script = ('import sys; import vaegan_jax.model.second_stage; '
            'print("vaegan_jax.model.priors" in sys.modules)')
  done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 0 and done.stdout.strip() == 'False', done.stderr[-2000:]
