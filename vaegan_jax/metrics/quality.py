"""Sample-quality metrics between a set of real and a set of generated features: the Fréchet
distance (FID), the kernel inception distance (KID), and precision and recall. Pure numpy.

- Fréchet distance (Heusel et al. 2017) between Gaussians fitted to the two sets, in float64,
  as pytorch-fid computes it (`calculate_frechet_distance`): scipy's matrix square root of
  S_a S_b, retried with 1e-6 added to both diagonals when it is not finite, and its imaginary
  part dropped where it is round-off.
- KID (Bińkowski et al. 2018): the unbiased estimate of MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets, with its standard deviation.
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points reaching their k-th nearest neighbour (k = 3). Precision is the share of
  generated points inside the real manifold (are samples realistic?); recall is the share of real
  points inside the generated manifold (are the modes covered?).
- The checkerboard index [ours], on pixels, not features: the share of a set's spectral power at
  the 2-pixel period (the highest frequency on each axis, where the artefacts of transposed
  convolutions sit; Odena, Dumoulin and Olah 2016), over the same share in real images. 1 is as
  real images are; it flags excess only, so lower is not better below 1: blur is judged by FID.

`FeatureStatistics` accumulates a set's count, sum and sum of outer products batch by batch, so
that 50,000 images never sit in memory at once for FID.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import linalg

from vaegan_jax import files, folders

SQRTM_OFFSET = 1e-6          # pytorch-fid's eps, added when the square root is not finite
IMAGINARY_TOLERANCE = 1e-3   # pytorch-fid: a larger imaginary part of the diagonal is an error
MAX_FEATURES = 2048          # Inception's pool3; the domain extractor's are fewer


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
  """count, sum [D] and sum of outer products [D, D] of a set of features, float64."""
  count: int
  total: np.ndarray
  outer: np.ndarray

  @classmethod
  def empty(cls, dim: int) -> FeatureStatistics:
    return cls(0, np.zeros(dim), np.zeros((dim, dim)))

  def add(self, features: np.ndarray) -> FeatureStatistics:
    """These statistics and a batch of features [N, D]."""
    features = np.asarray(features, np.float64)
    return FeatureStatistics(self.count + len(features), self.total + features.sum(axis=0),
                             self.outer + features.T @ features)

  @property
  def mean(self) -> np.ndarray:
    return self.total / self.count

  @property
  def covariance(self) -> np.ndarray:
    """The unbiased covariance (divided by count - 1), as np.cov(features, rowvar=False)."""
    return (self.outer - self.count * np.outer(self.mean, self.mean)) / (self.count - 1)

  def save(self, path: str) -> None:
    """An .npz file, never half-written (folders.write_atomically)."""
    folders.write_atomically(path, lambda file: np.savez(file, count=self.count, total=self.total,
                                                       outer=self.outer))

  @classmethod
  def load(cls, path: str, max_features: int = MAX_FEATURES) -> FeatureStatistics:
    """Statistics saved by `save`, of at most `max_features` features, read as hostile
    (files.read_npz)."""
    data = files.read_npz(path, 8 * (max_features ** 2 + max_features + 1) + 4096)
    return cls(int(data['count']), data['total'], data['outer'])


def nyquist_share(images: np.ndarray) -> float:
  """The share of the power spectrum of images [N, H, W, C] (their channel mean, each image's
  mean removed) that lies at the 2-pixel period: in row H / 2 and column W / 2 of the 2-D
  spectrum, averaged over the images. H and W must be even."""
  grey = np.asarray(images, np.float64).mean(axis=-1)
  grey = grey - grey.mean(axis=(1, 2), keepdims=True)
  power = np.mean(np.abs(np.fft.fft2(grey)) ** 2, axis=0)          # [H, W]
  height, width = power.shape
  at_period_two = (power[height // 2].sum() + power[:, width // 2].sum()
                   - power[height // 2, width // 2])
  return float(at_period_two / max(power.sum(), 1e-30))


def checkerboard_index(generated: np.ndarray, real: np.ndarray) -> float:
  """nyquist_share of the generated images over that of real ones (both [N, H, W, C], on the
  same scale): 1 where generated images have real images' share of 2-pixel-period power."""
  return nyquist_share(generated) / max(nyquist_share(real), 1e-30)


def sharpness(images: np.ndarray) -> float:
  """The mean over images [N, H, W, C] of the variance of the 4-neighbour Laplacian of each
  grey image (the channels' mean), on its valid interior (no padding). With pixels in [0, 1] it
  is the usual blur measure; blur lowers it, and so does noise's absence: noise raises it."""
  grey = np.asarray(images, np.float64).mean(axis=-1)
  laplacian = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
               - 4 * grey[:, 1:-1, 1:-1])
  return float(laplacian.var(axis=(1, 2)).mean())


def sharpness_ratio(generated: np.ndarray, real: np.ndarray) -> float:
  """sharpness of the generated images over that of real ones (both [N, H, W, C], on the same
  scale: the ratio does not depend on it). Near 1 is the target, not higher: noise raises it
  too, so it is read beside FID and the checkerboard index."""
  return sharpness(generated) / max(sharpness(real), 1e-30)


def statistics_of(features: np.ndarray) -> FeatureStatistics:
  """The statistics of one set of features [N, D]."""
  return FeatureStatistics.empty(np.shape(features)[1]).add(features)


def frechet_distance(mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray,
                     covariance_b: np.ndarray) -> float:
  """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)), in float64."""
  mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
  covariance_a = np.asarray(covariance_a, np.float64)
  covariance_b = np.asarray(covariance_b, np.float64)
  with warnings.catch_warnings():       # a singular product (fewer points than dimensions)
    warnings.simplefilter('ignore', linalg.LinAlgWarning)
    root = linalg.sqrtm(covariance_a @ covariance_b)
  if not np.isfinite(root).all():
    offset = SQRTM_OFFSET * np.eye(len(covariance_a))
    root = linalg.sqrtm((covariance_a + offset) @ (covariance_b + offset))
  if np.iscomplexobj(root):
    if not np.allclose(np.diagonal(root).imag, 0, atol=IMAGINARY_TOLERANCE):
      raise ValueError(f'The square root of S_a S_b has an imaginary part of '
                       f'{np.abs(root.imag).max():.3g}: the covariances are not valid.')
    root = root.real
  difference = mean_a - mean_b
  return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b)
               - 2 * np.trace(root))


def fid(real: FeatureStatistics, generated: FeatureStatistics) -> float:
  """The Fréchet distance between two sets' statistics."""
  return frechet_distance(real.mean, real.covariance, generated.mean, generated.covariance)


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(a b^T / d + 1)^3: [N, D] x [M, D] -> [N, M]."""
  return (a @ b.T / a.shape[1] + 1.0) ** 3


def unbiased_mmd2(a: np.ndarray, b: np.ndarray) -> float:
  """The unbiased MMD^2 estimate of two equal-size sets [m, D] with the polynomial kernel:
  the kernel means within each set leave out the diagonal."""
  m = len(a)
  within_a, within_b = polynomial_kernel(a, a), polynomial_kernel(b, b)
  off_diagonal = lambda kernel: (kernel.sum() - np.trace(kernel)) / (m * (m - 1))
  return float(off_diagonal(within_a) + off_diagonal(within_b)
               - 2 * polynomial_kernel(a, b).mean())


def kid(real: np.ndarray, generated: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """(mean, std) of the unbiased MMD^2 over `subsets` random subsets of each set, each of
  min(subset_size, both set sizes) points drawn without replacement."""
  real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
  size = min(subset_size, len(real), len(generated))
  rng = np.random.default_rng(seed)
  values = [unbiased_mmd2(real[rng.choice(len(real), size, replace=False)],
                          generated[rng.choice(len(generated), size, replace=False)])
            for _ in range(subsets)]
  return float(np.mean(values)), float(np.std(values))


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[N, M] squared Euclidean distances, never below 0."""
  return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None], 0.0)


def nearest_neighbour_radii(features: np.ndarray, k: int = 3, batch: int = 1024) -> np.ndarray:
  """[N]: the squared distance from each point to its k-th nearest other point."""
  radii = np.empty(len(features))
  for start in range(0, len(features), batch):
    distances = squared_distances(features[start:start + batch], features)
    # The 0-th nearest is the point itself (distance 0), so the k-th other is at index k.
    radii[start:start + batch] = np.partition(distances, k, axis=1)[:, k]
  return radii


def share_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                 batch: int = 1024) -> float:
  """The share of `points` within radius of some centre (squared radii)."""
  inside = [np.any(squared_distances(points[start:start + batch], centres) <= radii[None], axis=1)
            for start in range(0, len(points), batch)]
  return float(np.mean(np.concatenate(inside)))


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3
                     ) -> tuple[float, float]:
  """(precision, recall) of Kynkäänniemi et al. 2019 with k-nearest-neighbour manifolds."""
  real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
  precision = share_inside(generated, real, nearest_neighbour_radii(real, k))
  recall = share_inside(real, generated, nearest_neighbour_radii(generated, k))
  return precision, recall
