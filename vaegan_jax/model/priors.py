"""p(z) to decode samples from: the N(0, I) the model was trained with, or [ours] a density fitted
ex post to the encoder's means on training images (Ghosh et al. 2020, "From variational to
deterministic autoencoders", Sec. 4: samples from where the encoder puts data, no retraining).

A prior is named by a spec:
  standard   N(0, I), the paper's and the faithful default
  gaussian   one Gaussian with the codes' mean and full covariance
  gmm:K      K full-covariance Gaussians fitted by EM (scikit-learn's GaussianMixture)
  vae2       Dai & Wipf 2019's second-stage VAE on the codes (model/second_stage.py)

Every prior moves the same draws: z = transform(e, u, n) with e and n from N(0, I) [N, L] and u
from U[0, 1) [N]. A mixture's z is means[c] + scales[c] @ e, its component c drawn by weight
from u; the second stage's z is its decoder's f(e) + gamma_z n. The standard prior's z is e
itself, so it decodes exactly the latents the rest of the project draws.

A fit belongs to the checkpoint step whose encoder made the codes. It is kept in the workdir as
priors/SPEC-step_STEP.npz (`fit_name`), written whole or not at all, and read back under a size
cap, without pickles, with every array checked.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from vaegan_jax import files, folders
from vaegan_jax.model import second_stage_network

SPEC_FORMAT = re.compile(r'(standard|gaussian|gmm:([1-9][0-9]*)|vae2)')
SPEC_HELP = "standard, gaussian, gmm:K (K >= 1 components) or vae2"
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


class _Prior:
  """What every prior shares: `sample`, from its `transform` of e and u (and its latent_dim)."""

  def transform(self, normal: np.ndarray, uniform: np.ndarray,
                noise: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def sample(self, count: int, seed: int) -> np.ndarray:
    """`count` latents [count, L] float32. e is drawn first from numpy's default_rng(seed), so
    the standard prior gives default_rng(seed).standard_normal((count, L))."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((count, self.latent_dim))
    uniform = rng.uniform(size=count)
    return self.transform(normal, uniform, rng.standard_normal((count, self.latent_dim)))


@dataclasses.dataclass(frozen=True)
class Mixture(_Prior):
  """weights [K] (summing to 1), means [K, L] and scales [K, L, L], the lower Cholesky factors
  of the components' covariances."""
  weights: np.ndarray
  means: np.ndarray
  scales: np.ndarray

  @property
  def latent_dim(self) -> int:
    return self.means.shape[1]

  def arrays(self) -> dict[str, np.ndarray]:
    return dict(weights=self.weights, means=self.means, scales=self.scales)

  def transform(self, normal: np.ndarray, uniform: np.ndarray,
                noise: np.ndarray) -> np.ndarray:
    """z [N, L] from e ~ N(0, I) [N, L] and u ~ U[0, 1) [N] (which picks each z's component)."""
    del noise                              # a mixture adds none
    normal = np.asarray(normal, np.float64)
    cumulative = np.cumsum(self.weights)
    component = np.minimum(np.searchsorted(cumulative / cumulative[-1], uniform, side='right'),
                           len(self.weights) - 1)
    z = np.empty_like(normal)
    for k in np.unique(component):          # per component: no [N, L, L] gather
      chosen = component == k
      z[chosen] = self.means[k] + normal[chosen] @ self.scales[k].T
    return z.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SecondStage(_Prior):
  """The second stage's decoder (float32 arrays hidden_I_kernel/bias, head_kernel/bias) and its
  learned log gamma_z: z ~ N(f(u), gamma_z^2 I), as the authors' generate() draws it."""
  decoder: dict[str, np.ndarray]
  log_gamma: np.ndarray

  @property
  def latent_dim(self) -> int:
    return self.decoder['head_bias'].shape[0]

  def transform(self, normal: np.ndarray, uniform: np.ndarray,
                noise: np.ndarray) -> np.ndarray:
    del uniform                            # the second stage has no components to pick
    mean = second_stage_network.tower(self.decoder, np.asarray(normal, np.float32))['head']
    return (mean + np.exp(self.log_gamma) * np.asarray(noise, np.float32)).astype(np.float32)

  def arrays(self) -> dict[str, np.ndarray]:
    return dict(self.decoder, log_gamma=self.log_gamma)


Prior = Mixture | SecondStage


def standard(latent_dim: int) -> Mixture:
  """N(0, I) as a mixture of one component."""
  return Mixture(np.ones(1), np.zeros((1, latent_dim)), np.eye(latent_dim)[None])


def fit(spec: str, codes: np.ndarray, seed: int = 0) -> Prior:
  """The prior `spec` fitted to codes [N, L] (the encoder's means); 'standard' ignores them."""
  check_spec(spec)
  codes = np.asarray(codes, np.float64)
  if codes.ndim != 2 or not np.isfinite(codes).all():
    raise PriorError(f'The codes to fit {spec!r} to must be a finite [N, L] array; got shape '
                     f'{codes.shape}.')
  if spec == 'standard':
    return standard(codes.shape[1])
  if spec == 'vae2':
    from vaegan_jax.model import second_stage      # jax only where a second stage is trained
    try:
      return SecondStage(*second_stage.fit(codes, seed))
    except second_stage.Diverged as error:
      raise PriorError(f'{error}; use a gaussian or gmm:K prior.') from None
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
def fit_name(spec: str, step: int) -> str:
  """Where the fit of `spec` to the codes of checkpoint `step` is kept, in its workdir."""
  return f'priors/{label(spec)}-step_{int(step)}.npz'


def newest_fit(workdir: folders.Folder, spec: str, latent_dim: int, at_most: int
               ) -> tuple[int, Prior] | None:
  """(step, fit) of the newest fit of `spec` kept in the workdir at or before step `at_most`;
  None where there is none."""
  name = re.compile(re.escape(label(spec)) + r'-step_([0-9]{1,10})\.npz')
  found = [int(match.group(1)) for entry in
           (workdir.list('priors') if workdir.exists('priors') else [])
           if (match := name.fullmatch(entry))]
  steps = [step for step in found if step <= at_most]
  if not steps:
    return None
  step = max(steps)
  return step, load(workdir.path(fit_name(spec, step)), spec, latent_dim)


def fit_path(workdir: str, spec: str, step: int) -> str:
  return os.path.join(workdir, fit_name(spec, step))


def save(prior: Prior, workdir: folders.Folder, name: str) -> None:
  """The fit as the .npz `name` of its arrays (a mixture's three float64 ones, a second stage's
  float32 decoder) in the workdir, never half-written, never through a link."""
  workdir.write_atomically(name, lambda file: np.savez(file, **prior.arrays()))


def load(path: str, spec: str, latent_dim: int) -> Prior:
  """A fit of `spec` saved by `save`, for a model of latent size `latent_dim`; PriorError (one
  line, the file untouched) where it is not one."""
  if check_spec(spec) == 'vae2':
    shapes = second_stage_network.decoder_shapes(latent_dim)
    most = sum(int(np.prod(shape)) for shape in shapes.values()) * 4 + 256 * len(shapes) + 4096
  else:
    most = MAX_COMPONENTS * (latent_dim * latent_dim + latent_dim + 1) * 8 + 4096
  try:
    found = files.read_npz(path, most)       # headers first: nothing inflates past `most`
  except (files.UnsafeFile, OSError) as error:
    raise PriorError(f'{path} is not a saved prior fit ({error}). Delete it; it is fitted '
                     f'again.') from None
  problem = (_second_stage_problem if spec == 'vae2' else _mixture_problem)(found, latent_dim)
  if problem:
    raise PriorError(f'{path} is not a usable prior fit: {problem}. Delete it; it is fitted '
                     f'again.')
  if spec == 'vae2':
    return SecondStage({name: array for name, array in found.items() if name != 'log_gamma'},
                       found['log_gamma'])
  return Mixture(found['weights'], found['means'], found['scales'])


def _second_stage_problem(arrays: dict[str, np.ndarray], latent_dim: int) -> str | None:
  """What is wrong with a loaded second stage's arrays, or None."""
  shapes = second_stage_network.decoder_shapes(latent_dim)
  if sorted(arrays) != sorted(shapes):
    return f'it holds {sorted(arrays)}, not the second stage\'s {sorted(shapes)}'
  wrong = [name for name, shape in shapes.items()
           if arrays[name].shape != shape or arrays[name].dtype != np.float32]
  if wrong:
    return (f'{", ".join(sorted(wrong))} are not float32 arrays of the shapes a second stage '
            f'of latent size {latent_dim} has')
  if not all(np.isfinite(array).all() for array in arrays.values()):
    return 'it holds NaN or Inf'
  return None


def _mixture_problem(arrays: dict[str, np.ndarray], latent_dim: int) -> str | None:
  """What is wrong with a loaded mixture's arrays, or None."""
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
