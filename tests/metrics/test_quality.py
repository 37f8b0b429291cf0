"""The sample-quality metrics against hand computation and independent references."""
import itertools

import numpy as np
import pytest
import scipy.ndimage
from scipy import linalg

from vaegan_jax.metrics import quality


def random_covariance(rng, dim):
  factor = rng.normal(size=(dim, dim))
  return factor @ factor.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_against_a_direct_scipy_computation():
  rng = np.random.default_rng(0)
  for dim in (2, 5, 16):
    mean_a, mean_b = rng.normal(size=dim), rng.normal(size=dim)
    cov_a, cov_b = random_covariance(rng, dim), random_covariance(rng, dim)
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(root))
    assert quality.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected,
                                                                                 rel=1e-9)


def test_frechet_distance_of_diagonal_gaussians_by_hand():
  # ||mu_a - mu_b||^2 + sum (sqrt(a_i) - sqrt(b_i))^2 = (1 + 4) + (1 - 2)^2 + (3 - 1)^2 = 10
  got = quality.frechet_distance(np.array([0.0, 0.0]), np.diag([1.0, 9.0]),
                                 np.array([1.0, 2.0]), np.diag([4.0, 1.0]))
  assert got == pytest.approx(10.0, abs=1e-9)


def test_a_set_against_itself_scores_zero_even_when_singular():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(20, 50))            # 20 points in 50-d: a singular covariance
  stats = quality.statistics_of(features)
  assert abs(quality.fid(stats, stats)) < 1e-5                # round-off of a trace of 50
  other = quality.statistics_of(features + 0.5)   # singular too: the offset retry keeps it finite
  assert quality.fid(stats, other) == pytest.approx(50 * 0.25, rel=1e-3)


def test_streaming_statistics_equal_the_batch_statistics(tmp_path):
  rng = np.random.default_rng(2)
  features = rng.normal(size=(101, 7)) * np.arange(1, 8) + 3.0
  stats = quality.FeatureStatistics.empty(7)
  for chunk in np.array_split(features, 4):
    stats = stats.add(chunk)
  assert stats.count == 101
  np.testing.assert_allclose(stats.mean, features.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(stats.covariance, np.cov(features, rowvar=False), rtol=1e-10)
  stats.save(str(tmp_path / 'stats.npz'))
  loaded = quality.FeatureStatistics.load(str(tmp_path / 'stats.npz'))
  np.testing.assert_array_equal(loaded.outer, stats.outer)
  assert loaded.count == 101 and not list(tmp_path.glob('*incomplete*'))


def test_unbiased_mmd2_against_a_double_loop():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 0.3
  kernel = lambda x, y: (np.dot(x, y) / 4 + 1) ** 3
  m = len(a)
  within = lambda s: sum(kernel(s[i], s[j]) for i, j in itertools.permutations(range(m), 2))
  across = sum(kernel(a[i], b[j]) for i in range(m) for j in range(m))
  expected = (within(a) + within(b)) / (m * (m - 1)) - 2 * across / m**2
  assert quality.unbiased_mmd2(a, b) == pytest.approx(expected, rel=1e-12)
  mean, std = quality.kid(a, b, subsets=5, subset_size=6)   # every subset is the whole set
  assert mean == pytest.approx(expected, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
  rng = np.random.default_rng(4)
  real, same = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
  near, _ = quality.kid(real, same, subsets=20, subset_size=300)
  far, _ = quality.kid(real, same + 1.0, subsets=20, subset_size=300)
  assert abs(near) < 0.01 < far


def two_clusters(rng, count):
  return np.concatenate([rng.normal(size=(count, 2)) * 0.1,
                         rng.normal(size=(count, 2)) * 0.1 + [5.0, 0.0]])


def test_precision_and_recall_on_constructed_sets():
  rng = np.random.default_rng(5)
  real = two_clusters(rng, 200)
  both = two_clusters(rng, 200)
  assert quality.precision_recall(real, both) >= (0.95, 0.95)
  # A dropped mode: every sample is realistic, half of the data is never drawn.
  one_mode = rng.normal(size=(400, 2)) * 0.1
  precision, recall = quality.precision_recall(real, one_mode)
  assert precision > 0.95 and 0.45 < recall < 0.55
  # Off the manifold: a shifted cluster is neither precise nor covering.
  assert quality.precision_recall(real, both + [0.0, 3.0]) == (0.0, 0.0)


def test_nearest_neighbour_radii_by_hand():
  points = np.array([[0.0], [1.0], [3.0], [7.0]])
  # squared distances to the 1st and 2nd nearest other points
  np.testing.assert_allclose(quality.nearest_neighbour_radii(points, k=1), [1, 1, 4, 16])
  np.testing.assert_allclose(quality.nearest_neighbour_radii(points, k=2), [9, 4, 9, 36])


def grid(height=8, width=8):
  return np.meshgrid(np.arange(height), np.arange(width), indexing='ij')


def test_nyquist_share_of_patterns_by_hand():
  rows, cols = grid()
  checkerboard = (-1.0) ** (rows + cols)                # all power at (H/2, W/2)
  stripes = (-1.0) ** rows                              # all power at (H/2, 0)
  smooth = np.cos(2 * np.pi * rows / 8)                 # all power at (+-1, 0)
  as_images = lambda pattern: np.repeat(pattern[None, :, :, None], 3, axis=-1)
  assert quality.nyquist_share(as_images(checkerboard)) == pytest.approx(1.0)
  assert quality.nyquist_share(as_images(stripes)) == pytest.approx(1.0)
  assert quality.nyquist_share(as_images(smooth)) == pytest.approx(0.0, abs=1e-12)
  # cos has power 2 (HW/2)^2 and c (-1)^(i+j) has c^2 (HW)^2: the share is c^2 / (c^2 + 1/2).
  mixed = as_images(smooth + 0.5 * checkerboard)
  assert quality.nyquist_share(mixed) == pytest.approx(0.25 / 0.75)
  # A constant offset per image is removed first; the channel mean is what is measured.
  assert quality.nyquist_share(mixed + 0.3) == pytest.approx(0.25 / 0.75)


def test_checkerboard_index_is_the_ratio_of_shares():
  rows, cols = grid()
  rng = np.random.default_rng(0)
  real = np.cos(2 * np.pi * rows / 8)[None, :, :, None] + 0.1 * rng.standard_normal((4, 8, 8, 1))
  artefacts = real + 0.5 * ((-1.0) ** (rows + cols))[None, :, :, None]
  index = quality.checkerboard_index(artefacts, real)
  assert index == pytest.approx(quality.nyquist_share(artefacts) / quality.nyquist_share(real))
  assert index > 2 and quality.checkerboard_index(real, real) == pytest.approx(1.0)


def test_sharpness_is_the_variance_of_the_laplacian_computed_by_hand():
  """Issue 48: one 4x4 grey image, pixels in [0, 1]: its 2x2 interior's 4-neighbour Laplacians,
  written out, and their variance."""
  grey = np.array([[0.0, 0.2, 0.4, 0.6],
                   [0.1, 0.9, 0.3, 0.5],
                   [0.7, 0.2, 0.8, 0.0],
                   [0.3, 0.6, 0.1, 1.0]])
  # interior (1, 1): 0.2 + 0.2 + 0.1 + 0.3 - 4 * 0.9 = -2.8; (1, 2): 0.4 + 0.8 + 0.9 + 0.5 - 1.2
  # = 1.4; (2, 1): 0.9 + 0.6 + 0.7 + 0.8 - 0.8 = 2.2; (2, 2): 0.3 + 0.1 + 0.2 + 0.0 - 3.2 = -2.6
  laplacians = np.array([-2.8, 1.4, 2.2, -2.6])
  expected = np.mean((laplacians - laplacians.mean()) ** 2)
  colour = np.repeat(grey[None, :, :, None], 3, axis=-1)          # the channels' mean is grey
  assert quality.sharpness(colour) == pytest.approx(expected)
  # Two images: the mean of their variances; the ratio does not depend on the pixels' scale.
  both = np.concatenate([colour, 0.5 * colour])
  assert quality.sharpness(both) == pytest.approx((expected + expected / 4) / 2)
  assert quality.sharpness_ratio(2 * both - 1, 2 * colour - 1) == pytest.approx(
      quality.sharpness(both) / quality.sharpness(colour))


def test_a_blurred_image_is_less_sharp_and_noise_is_more():
  rng = np.random.default_rng(3)
  blocks = np.kron(rng.uniform(size=(6, 8, 8, 3)), np.ones((1, 4, 4, 1)))   # sharp edges
  blurred = scipy.ndimage.gaussian_filter(blocks, (0, 1.5, 1.5, 0), mode='reflect')
  assert quality.sharpness_ratio(blurred, blocks) < 0.5
  noisy = blocks + 0.1 * rng.normal(size=blocks.shape)
  assert quality.sharpness_ratio(noisy, blocks) > 1.2
