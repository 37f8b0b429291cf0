"""Priors to sample from (model/priors.py): the standard normal, and fits to the codes [ours]."""
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from vaegan_jax import folders
from vaegan_jax.model import priors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_standard_prior_draws_what_the_figures_always_drew():
  latents = priors.standard(6).sample(50, seed=4)
  expected = np.random.default_rng(4).standard_normal((50, 6)).astype(np.float32)
  np.testing.assert_array_equal(latents, expected)


def test_transform_picks_components_by_weight_and_moves_by_the_cholesky_factor():
  mixture = priors.Mixture(weights=np.array([0.2, 0.8]), means=np.array([[1.0, 2.0], [-5, 0]]),
                           scales=np.array([[[2.0, 0], [1, 3]], [[1, 0], [0, 1]]]))
  normal = np.array([[1.0, 1.0], [1.0, -2.0], [0.5, 0.5]])
  # u < 0.2 -> component 0; a mixture adds no noise, so a large one must change nothing
  z = mixture.transform(normal, np.array([0.1, 0.1, 0.5]), noise=np.full((3, 2), 9.0))
  # [1, 2] + [[2, 0], [1, 3]] @ e
  np.testing.assert_allclose(z, [[3.0, 6.0], [3.0, -3.0], [-4.5, 0.5]])


def test_a_gaussian_is_the_codes_mean_and_covariance():
  codes = np.random.default_rng(0).normal(size=(400, 3)) @ np.array(
      [[1.0, 0, 0], [0.5, 2, 0], [0, -1, 0.3]]) + np.array([1.0, -2, 3])
  fitted = priors.fit('gaussian', codes)
  np.testing.assert_allclose(fitted.means[0], codes.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(fitted.scales[0] @ fitted.scales[0].T,
                             np.cov(codes, rowvar=False) + priors.RIDGE * np.eye(3), rtol=1e-10)
  assert np.allclose(np.triu(fitted.scales[0], 1), 0)             # lower-triangular


def mixture_moments(mixture):
  """Mean and covariance of a Gaussian mixture, from its parameters."""
  covariances = mixture.scales @ np.swapaxes(mixture.scales, 1, 2)
  mean = mixture.weights @ mixture.means
  second = np.einsum('k,kij->ij', mixture.weights, covariances + np.einsum(
      'ki,kj->kij', mixture.means, mixture.means))
  return mean, second - np.outer(mean, mean)


def test_the_gmm_prior_finds_the_clusters_and_its_samples_have_the_mixtures_moments():
  rng = np.random.default_rng(1)
  centres = np.array([[-4.0, 0], [4, 0], [0, 5]])
  sizes = (300, 600, 900)
  codes = np.concatenate([rng.normal(centre, scale, (size, 2)) for centre, scale, size in
                          zip(centres, (0.5, 1.0, 0.3), sizes)])
  fitted = priors.fit('gmm:3', codes, seed=0)
  order = np.argsort([np.argmin(np.linalg.norm(centres - mean, axis=1)) for mean in fitted.means])
  np.testing.assert_allclose(fitted.weights[order], np.array(sizes) / sum(sizes), atol=0.01)
  np.testing.assert_allclose(fitted.means[order], centres, atol=0.1)
  # scales are of the covariances (not the precisions scikit-learn also keeps): cluster 0's
  # spread is 0.5 on each axis.
  np.testing.assert_allclose(np.sqrt(np.diag(fitted.scales[order[0]] @ fitted.scales[order[0]].T)),
                             [0.5, 0.5], rtol=0.1)

  samples = fitted.sample(200_000, seed=3).astype(np.float64)
  mean, covariance = mixture_moments(fitted)
  np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.03)
  np.testing.assert_allclose(np.cov(samples, rowvar=False), covariance, rtol=0.02, atol=0.03)


@pytest.mark.parametrize('spec', ['normal', 'gmm:0', 'gmm:', 'gmm:2.5', ' gaussian', 'gmm:2000',
                                  'vae2:3'])
def test_a_bad_spec_is_named(spec):
  with pytest.raises(priors.PriorError, match='prior|Prior'):
    priors.check_spec(spec)


def test_too_few_codes_for_the_components_are_refused():
  with pytest.raises(priors.PriorError, match='too few to fit'):
    priors.fit('gmm:4', np.zeros((5, 2)))


def test_a_saved_fit_reads_back_exactly_and_replaces_a_link_rather_than_writing_through_it(
    tmp_path):
  fitted = priors.fit('gmm:2', np.random.default_rng(0).normal(size=(100, 4)))
  path = priors.fit_path(str(tmp_path / 'run'), 'gmm:2', 800)
  assert path == str(tmp_path / 'run' / 'priors' / 'gmm2-step_800.npz')
  os.makedirs(os.path.dirname(path))
  target = tmp_path / 'elsewhere'
  target.write_bytes(b'not ours')
  os.symlink(target, path)
  priors.save(fitted, folders.Folder(str(tmp_path / 'run')), priors.fit_name('gmm:2', 800))
  assert target.read_bytes() == b'not ours' and not os.path.islink(path)
  again = priors.load(path, 'gmm:2', latent_dim=4)
  for name in ('weights', 'means', 'scales'):
    np.testing.assert_array_equal(getattr(again, name), getattr(fitted, name))
  assert os.listdir(os.path.dirname(path)) == ['gmm2-step_800.npz']      # nothing half-written


def write_npz(path, **arrays):
  folders.write_atomically(str(path), lambda file: np.savez(file, **arrays))


@pytest.mark.parametrize('arrays, problem', [
    (dict(weights=np.ones(1), means=np.zeros((1, 3)), scales=np.eye(3)[None]), 'latent size 4'),
    (dict(weights=np.ones(1), means=np.zeros((1, 4))), 'not weights, means and scales'),
    (dict(weights=np.ones(1), means=np.full((1, 4), np.nan), scales=np.eye(4)[None]), 'NaN'),
    (dict(weights=np.array([0.7, 0.7]), means=np.zeros((2, 4)), scales=np.stack([np.eye(4)] * 2)),
     'not a distribution'),
    (dict(weights=np.ones(1, np.float32), means=np.zeros((1, 4)), scales=np.eye(4)[None]),
     'not float64'),
])
def test_a_fit_that_does_not_fit_the_model_is_refused_and_left_alone(tmp_path, arrays, problem):
  path = tmp_path / 'fit.npz'
  write_npz(path, **arrays)
  before = path.read_bytes()
  with pytest.raises(priors.PriorError, match=problem):
    priors.load(str(path), 'gmm:2', latent_dim=4)
  assert path.read_bytes() == before


class Exploit:
  def __reduce__(self):
    return (os.system, ('touch pwned',))


def test_a_pickle_inside_a_fit_is_never_unpickled(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  path = tmp_path / 'fit.npz'
  write_npz(path, weights=np.array([Exploit()], dtype=object), means=np.zeros((1, 4)),
            scales=np.eye(4)[None])
  with pytest.raises(priors.PriorError, match='not a saved prior fit'):
    priors.load(str(path), 'gmm:2', latent_dim=4)
  assert not os.path.exists(tmp_path / 'pwned')
  with open(tmp_path / 'raw.npz', 'wb') as file:           # not an npz at all: a bare pickle
    pickle.dump(Exploit(), file)
  with pytest.raises(priors.PriorError, match='not a saved prior fit'):
    priors.load(str(tmp_path / 'raw.npz'), 'gmm:2', latent_dim=4)
  assert not os.path.exists(tmp_path / 'pwned')


def test_a_fit_larger_than_any_fit_of_the_model_is_not_read(tmp_path):
  path = tmp_path / 'fit.npz'
  with open(path, 'wb') as file:
    file.truncate(priors.MAX_COMPONENTS * (4 * 4 + 4 + 1) * 8 + 4097)
  with pytest.raises(priors.PriorError, match='over the limit'):
    priors.load(str(path), 'gmm:2', latent_dim=4)


def npy_header(shape, dtype='<f8'):
  """An .npy header (version 1.0) declaring `shape`, padded as np.save pads it."""
  text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
  text += ' ' * (63 - (10 + len(text)) % 64) + '\n'
  return b'\x93NUMPY\x01\x00' + len(text).to_bytes(2, 'little') + text.encode()


def test_a_fit_is_checked_by_its_headers_before_anything_is_inflated(tmp_path):
  """Issue 45, item 3: a fit that is not a zip, one whose header declares 2^40 x 8 x 8 float64
  (512 TiB), and a 522 KB zip of deflated zeros under the size cap (985 MB once inflated) are
  each refused in one line, without allocating what they declare (a subprocess under a 256 MB
  address-space cap reads them)."""
  latent = 8
  not_a_zip = tmp_path / 'not_a_zip.npz'
  not_a_zip.write_bytes(b'PK but not a zip' * 10)
  huge = tmp_path / 'huge_header.npz'
  with zipfile.ZipFile(huge, 'w') as archive:
    archive.writestr('weights.npy', npy_header((1,)) + np.ones(1).tobytes())
    archive.writestr('means.npy', npy_header((2**40, latent)))
    archive.writestr('scales.npy', npy_header((2**40, latent, latent)))
  zeros = tmp_path / 'deflated_zeros.npz'
  with zipfile.ZipFile(zeros, 'w', zipfile.ZIP_DEFLATED) as archive:
    archive.writestr('weights.npy', npy_header((1,)) + np.ones(1).tobytes())
    archive.writestr('means.npy', npy_header((1, latent)) + bytes(8 * latent))
    archive.writestr('scales.npy', npy_header((600_000, latent, latent))
                     + bytes(600_000 * latent * latent * 8))         # 307 MB of zeros
  assert zeros.stat().st_size < priors.MAX_COMPONENTS * (latent * latent + latent + 1) * 8
  script = '''
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))
from vaegan_jax.model import priors
for path in sys.argv[1:]:
  try:
    priors.load(path, 'gmm:10', latent_dim=8)
    print('read', path)
  except priors.PriorError as error:
    print(error)
'''
  result = subprocess.run([sys.executable, '-c', script, str(not_a_zip), str(huge), str(zeros)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS='1'))
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert len(lines) == 3 and all('Delete it; it is fitted again.' in line for line in lines)
  assert 'is not a readable .npz file (BadZipFile' in lines[0]
  assert 'take more than' in lines[1] and 'take more than' in lines[2]
