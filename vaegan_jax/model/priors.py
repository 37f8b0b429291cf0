"""p(z) to decode samples from: the N(0, I) the model was trained with, or [ours] a density fitted
ex post to the encoder's means on training images (Ghosh et al. 2020, "From variational to
deterministic autoencoders", Sec. 4: samples from where the encoder puts data, no retraining).

A prior is named by a spec:
  standard   N(0, I), the paper's and the faithful default
  gaussian   one Gaussian with the codes' mean and full covariance
  gmm:K      K full-covariance Gaussians fitted by EM (scikit-learn's GaussianMixture)

Each is a Gaussian mixture, so one sampler serves all: z = means[c] + scales[c] @ e, with e from
N(0, I) and the component c drawn by its weight from a uniform u. The standard prior's z is e
itself, so it decodes exactly the latents the rest of the project draws.

A fit belongs to the checkpoint step whose encoder made the codes. It is kept in the workdir as
priors/SPEC-step_STEP.npz (`fit_path`), written whole or not at all, and read back under a size
cap, without pickles, with every array checked.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re

import numpy as np

from vaegan_jax import files

SPEC_FORMAT = re.compile(r'(standard|gaussian|gmm:([1-9][0-9]*))')
SPEC_HELP = "standard, gaussian or gmm:K (K >= 1 components)"
RIDGE = 1e-6        # added to each covariance's diagonal, as scikit-learn's reg_covar default
MAX_LATENT_DIM = 4096
MAX_COMPONENTS = 1024


class PriorError(ValueError):
  """A prior spec or a saved fit that cannot be used; the message says why and what to do."""


def check_spec(spec: str) -> str:
  """`spec`, if it names a prior; PriorError otherwise."""
  if not isinstance(spec, str) or not SPEC_FORMAT.fullmatch(spec):
    raise PriorError(f'Unknown prior {spec!r}; use {SPEC_HELP}.')
  components = SPEC_FORMAT.fullmatch(spec).group(2)
  if components is not None and int(components) > MAX_COMPONENTS:
    raise PriorError(f'Prior {spec!r}: at most {MAX_COMPONENTS} components.')
  return spec


def label(spec: str) -> str:
  """A name for metrics and files: 'gmm:10' -> 'gmm10'."""
  return check_spec(spec).replace(':', '')


@dataclasses.dataclass(frozen=True)
class Mixture:
  """weights [K] (summing to 1), means [K, L] and scales [K, L, L], the lower Cholesky factors
  of the components' covariances."""
  weights: np.ndarray
  means: np.ndarray
  scales: np.ndarray

  @property
  def latent_dim(self) -> int:
    return self.means.shape[1]

  def transform(self, normal: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """z [N, L] from e ~ N(0, I) [N, L] and u ~ U[0, 1) [N] (which picks each z's component)."""
    normal = np.asarray(normal, np.float64)
    cumulative = np.cumsum(self.weights)
    component = np.minimum(np.searchsorted(cumulative / cumulative[-1], uniform, side='right'),
                           len(self.weights) - 1)
    z = np.empty_like(normal)
    for k in np.unique(component):          # per component: no [N, L, L] gather
      chosen = component == k
      z[chosen] = self.means[k] + normal[chosen] @ self.scales[k].T
    return z.astype(np.float32)

  def sample(self, count: int, seed: int) -> np.ndarray:
    """`count` latents [count, L] float32. e is drawn first from numpy's default_rng(seed), so
    the standard prior gives default_rng(seed).standard_normal((count, L))."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((count, self.latent_dim))
    return self.transform(normal, rng.uniform(size=count))


def standard(latent_dim: int) -> Mixture:
  """N(0, I) as a mixture of one component."""
  return Mixture(np.ones(1), np.zeros((1, latent_dim)), np.eye(latent_dim)[None])


def fit(spec: str, codes: np.ndarray, seed: int = 0) -> Mixture:
  """The prior `spec` fitted to codes [N, L] (the encoder's means); 'standard' ignores them."""
  check_spec(spec)
  codes = np.asarray(codes, np.float64)
  if codes.ndim != 2 or not np.isfinite(codes).all():
    raise PriorError(f'The codes to fit {spec!r} to must be a finite [N, L] array; got shape '
                     f'{codes.shape}.')
  if spec == 'standard':
    return standard(codes.shape[1])
  components = 1 if spec == 'gaussian' else int(spec.split(':')[1])
  if len(codes) < 2 * components:
    raise PriorError(f'{len(codes)} codes are too few to fit {spec!r}: give at least '
                     f'{2 * components}.')
  if spec == 'gaussian':
    covariance = np.cov(codes, rowvar=False).reshape(codes.shape[1], codes.shape[1])
    return _mixture(np.ones(1), codes.mean(axis=0)[None], covariance[None])
  from sklearn.mixture import GaussianMixture      # only where a mixture is fitted
  mixture = GaussianMixture(n_components=components, covariance_type='full', reg_covar=RIDGE,
                            random_state=seed).fit(codes)
  return _mixture(mixture.weights_, mixture.means_, mixture.covariances_, ridge=0.0)


def _mixture(weights, means, covariances, ridge: float = RIDGE) -> Mixture:
  eye = np.eye(means.shape[1])
  scales = np.linalg.cholesky(np.asarray(covariances, np.float64) + ridge * eye)
  return Mixture(np.asarray(weights, np.float64), np.asarray(means, np.float64), scales)


# ---------------------------------------------------------------- saved fits
def fit_path(workdir: str, spec: str, step: int) -> str:
  """Where the fit of `spec` to the codes of checkpoint `step` is kept in a workdir."""
  return os.path.join(workdir, 'priors', f'{label(spec)}-step_{int(step)}.npz')


def save(mixture: Mixture, path: str) -> None:
  """The fit as an .npz of three float64 arrays, never half-written."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_atomically(path, lambda file: np.savez(
      file, weights=mixture.weights, means=mixture.means, scales=mixture.scales))


def load(path: str, latent_dim: int) -> Mixture:
  """A fit saved by `save`, for a model of latent size `latent_dim`; PriorError (one line, the
  file untouched) where it is not one."""
  most = MAX_COMPONENTS * (latent_dim * latent_dim + latent_dim + 1) * 8 + 4096
  try:
    data = files.read_regular_file(path, most)
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
      found = {name: arrays[name] for name in arrays.files}
  except (files.UnsafeFile, OSError, ValueError) as error:
    raise PriorError(f'{path} is not a saved prior fit ({error}). Delete it; it is fitted '
                     f'again.') from None
  problem = _problem(found, latent_dim)
  if problem:
    raise PriorError(f'{path} is not a usable prior fit: {problem}. Delete it; it is fitted '
                     f'again.')
  return Mixture(found['weights'], found['means'], found['scales'])


def _problem(arrays: dict[str, np.ndarray], latent_dim: int) -> str | None:
  """What is wrong with a loaded fit's arrays, or None."""
  if sorted(arrays) != ['means', 'scales', 'weights']:
    return f'it holds {sorted(arrays)}, not weights, means and scales'
  weights, means, scales = arrays['weights'], arrays['means'], arrays['scales']
  if any(array.dtype != np.float64 for array in (weights, means, scales)):
    return 'its arrays are not float64'
  count = len(weights)
  if (weights.ndim != 1 or not 1 <= count <= MAX_COMPONENTS
      or means.shape != (count, latent_dim) or scales.shape != (count, latent_dim, latent_dim)):
    return (f'shapes {weights.shape}, {means.shape}, {scales.shape} do not fit a model of '
            f'latent size {latent_dim}')
  if not all(np.isfinite(array).all() for array in (weights, means, scales)):
    return 'it holds NaN or Inf'
  if (weights < 0).any() or abs(weights.sum() - 1) > 1e-6:
    return 'its weights are not a distribution'
  return None
