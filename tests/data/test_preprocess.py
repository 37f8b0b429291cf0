"""Crop, blur and resize against references computed independently (scipy's filter, a per-pixel
bicubic loop written from Keys' formula), and the channel and crop rules, 16-bit and transparent
images among them."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from vaegan_jax.data import preprocess, sources

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def keys_weight(distance: float) -> float:
  """Keys' cubic convolution kernel, a = -0.5, written out piecewise."""
  d = abs(distance)
  if d < 1:
    return 1.5 * d**3 - 2.5 * d**2 + 1
  if d < 2:
    return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
  return 0.0


def bicubic_reference(image: np.ndarray, size: int) -> np.ndarray:
  """[S, S] -> [size, size]: sample at output pixel centres, taps clamped to the edge."""
  side = image.shape[0]
  scale = side / size
  out = np.zeros((size, size))
  for row in range(size):
    for col in range(size):
      y, x = (row + 0.5) * scale - 0.5, (col + 0.5) * scale - 0.5
      total = 0.0
      for i in range(math.floor(y) - 1, math.floor(y) + 3):
        for j in range(math.floor(x) - 1, math.floor(x) + 3):
          pixel = image[min(max(i, 0), side - 1), min(max(j, 0), side - 1)]
          total += keys_weight(y - i) * keys_weight(x - j) * pixel
      out[row, col] = total
  return out


def test_blur_sigma_is_the_authors_rule():
  assert preprocess.blur_sigma(148, 64) == pytest.approx(math.sqrt(148 / 64) / 2)
  assert preprocess.blur_sigma(148, 64) == pytest.approx(0.7603, abs=1e-4)
  assert preprocess.blur_sigma(28, 32) == 0.0          # no blur when enlarging


def test_blur_matrix_matches_scipy_gaussian_filter():
  signal = np.random.default_rng(0).random((37, 4))
  for sigma in (0.5, 0.76, 2.3):
    ours = preprocess.gaussian_blur_matrix(37, sigma) @ signal
    scipy_blur = scipy.ndimage.gaussian_filter1d(signal, sigma, axis=0, mode='reflect')
    np.testing.assert_allclose(ours, scipy_blur, atol=1e-12)


def test_bicubic_matrix_matches_per_pixel_reference():
  image = np.random.default_rng(1).random((23, 23))
  for size in (8, 23, 40):
    matrix = preprocess.bicubic_matrix(23, size)
    np.testing.assert_allclose(matrix @ image @ matrix.T, bicubic_reference(image, size),
                               atol=1e-12)


def test_celeba_preprocess_matches_crop_blur_resize_reference():
  pixels = np.random.default_rng(2).integers(0, 256, (218, 178, 3), dtype=np.uint8)
  ours = preprocess.preprocess(Image.fromarray(pixels), preprocess.PreprocessSpec(resolution=16))
  crop = pixels[40:188, 15:163].astype(np.float64)
  sigma = math.sqrt(148 / 16) / 2
  blurred = scipy.ndimage.gaussian_filter(crop, (sigma, sigma, 0), mode='reflect')
  reference = np.stack([bicubic_reference(blurred[..., c], 16) for c in range(3)], axis=-1)
  reference = np.clip(np.rint(reference), 0, 255)
  assert ours.shape == (16, 16, 3) and ours.dtype == np.uint8
  assert np.abs(ours.astype(int) - reference).max() <= 1      # float32 vs float64 rounding
  assert np.mean(ours == reference) > 0.97


def test_constant_image_stays_constant():
  flat = Image.new('RGB', (178, 218), (10, 120, 250))
  out = preprocess.preprocess(flat, preprocess.PreprocessSpec(resolution=32))
  assert np.all(out == np.array([10, 120, 250], np.uint8))


def test_centre_crop_and_channels():
  wide = np.zeros((20, 60), np.uint8)
  wide[:, 20:40] = 200                      # the centred 20x20 square is all 200
  grey = Image.fromarray(wide, mode='L')
  rgb = preprocess.preprocess(grey, preprocess.PreprocessSpec(crop='centre', resolution=10))
  assert rgb.shape == (10, 10, 3) and np.all(rgb == 200)
  colour = Image.new('RGB', (30, 30), (255, 0, 0))
  luminance = preprocess.preprocess(colour, preprocess.PreprocessSpec(crop='centre',
                                                                      resolution=30, channels=1))
  assert luminance.shape == (30, 30, 1) and np.all(luminance == 76)     # PIL's L of pure red


def test_small_image_with_celeba_crop_is_refused():
  with pytest.raises(ValueError, match='crop=centre'):
    preprocess.preprocess(Image.new('RGB', (64, 64)), preprocess.PreprocessSpec())


def test_bad_spec_is_refused():
  with pytest.raises(ValueError, match='crop'):
    preprocess.PreprocessSpec(crop='middle')
  with pytest.raises(ValueError, match='channels'):
    preprocess.PreprocessSpec(channels=2)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
  ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)   # 0 .. 65520
  path = str(tmp_path / 'grey16.png')
  Image.fromarray(ramp).save(path)
  image = sources.ImageLimits().decode(open(path, 'rb').read())
  assert image.mode.startswith('I')                    # how Pillow reads a 16-bit PNG
  pixels = preprocess.to_channels(image, 3)
  expected = np.round(ramp / 257.0).astype(np.uint8)   # 65535 -> 255
  np.testing.assert_array_equal(pixels[..., 0], expected)
  np.testing.assert_array_equal(pixels[..., 2], expected)
  assert 0 < pixels.mean() < 255                       # clipping made every pixel 255


def test_transparent_pixels_show_the_documented_background(tmp_path):
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[..., 0] = 200                                   # red under every pixel
  rgba[:4, :, 3] = 255                                 # top half opaque, bottom transparent
  rgba[4:, :4, 3] = 128                                # bottom-left half transparent
  pixels = preprocess.to_channels(Image.fromarray(rgba, 'RGBA'), 3)
  np.testing.assert_array_equal(pixels[0, 0], [200, 0, 0])
  np.testing.assert_array_equal(pixels[7, 7], preprocess.ALPHA_BACKGROUND)
  # alpha 128/255 of red over white: 200 a + 255 (1 - a), and 255 (1 - a) for green and blue.
  alpha = 128 / 255
  np.testing.assert_allclose(pixels[7, 0], [200 * alpha + 255 * (1 - alpha),
                                            255 * (1 - alpha), 255 * (1 - alpha)], atol=1)


def test_a_large_image_is_resized_in_strips_as_one_matrix_product_would_be():
  """A square past STRIP_ROWS rows is multiplied in strip by strip: the same image as the whole
  product, to float32 rounding (at most 1 in a pixel value)."""
  pixels = np.random.default_rng(5).integers(0, 256, (700, 650, 3), dtype=np.uint8)
  spec = preprocess.PreprocessSpec(crop='centre', resolution=32)
  ours = preprocess.preprocess(Image.fromarray(pixels), spec).astype(int)
  square = preprocess.crop_square(pixels, 'centre').astype(np.float64)
  matrix = preprocess.resize_matrix(650, 32).astype(np.float64)
  whole = np.clip(np.rint(matrix @ square.transpose(2, 0, 1) @ matrix.T), 0, 255)
  assert np.abs(ours - whole.transpose(1, 2, 0)).max() <= 1


def test_a_large_legal_image_is_prepared_holding_one_full_size_copy(tmp_path):
  """Issue 45, item 5: a 142 KB PNG of 7000x7000 (legal under the 50-megapixel cap) took
  1.33 GB to prepare: a float32 copy, its products, and a dense 7000x7000 blur matrix. Now the
  decoded image is the one full-size copy (147 MB); the process's peak stays under 400 MB."""
  path = tmp_path / 'large.png'
  Image.fromarray(np.zeros((7000, 7000, 3), np.uint8)).save(path, optimize=True)
  script = '''
import sys
from vaegan_jax.data import preprocess, sources
image = sources.ImageLimits().read_file(sys.argv[1])
preprocess.preprocess(image, preprocess.PreprocessSpec(crop='centre', resolution=64))
peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]
print(int(peak.split()[1]) // 1024)        # this process's own peak (ru_maxrss counts its parent)
'''
  done = subprocess.run([sys.executable, '-c', script, str(path)], capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, PYTHONPATH=REPO,
                                              OPENBLAS_NUM_THREADS='1'))
  assert done.returncode == 0, done.stderr[-2000:]
  assert int(done.stdout.split()[-1]) < 400, done.stdout
