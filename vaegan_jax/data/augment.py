"""The authors' training-set augmentation: pre-made augmented copies of the training images.

The code trains CelebA on 600,000 augmented copies, made once (dataset/celeba.py, `celeba_imgs`
with `_resize_augment`, in andersbll/autoencoding_beyond_pixels): copy i is image i mod n of the
training images, each with its own random draw of (dataset/augment.py,
`sample_img_augment_params` with the sigmas of `_resize_augment`):

    translation ~ N(0, 2 px) per axis        scale ~ N(1, 0.01)        rotation ~ N(0, 0.01 rad)
    gamma = exp(g / ln 2), g ~ N(0.05^2, 0.05)       contrast = exp(c / ln 2), c ~ N(0.05^2, 0.05)
    hue ~ N(0, 0.01)

applied by `img_augment` to the whole 178x218 image in [0, 1], before the usual crop, blur and
resize: a similarity warp about the image centre, sampled with Catmull-Rom bicubic
interpolation, edge pixels repeated outside and the result clipped to the input's range
(scikit-image's `warp(order=3, mode='nearest')` of 2016); then pixels ** gamma; then in HSV the
saturation and value ** contrast and the hue shifted by `hue`, wrapping around.

Here each copy's draw comes from numpy's generator seeded with (seed, i), so the copies are the
same on every machine and every run.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from vaegan_jax.data.dataset_layout import DataError, augmented_name
from vaegan_jax.data.sources import Example, Source

# The sigmas of the code's CelebA augmentation (dataset/celeba.py, `_resize_augment`).
SIGMAS = dict(translation=2.0, scale=0.01, rotation=0.01, gamma=0.05, contrast=0.05, hue=0.01)


@dataclasses.dataclass(frozen=True)
class Draw:
  """One copy's augmentation: translation (x, y) in pixels, scale, rotation in radians, gamma
  and contrast exponents, hue shift in turns."""
  translation: tuple[float, float]
  scale: float
  rotation: float
  gamma: float
  contrast: float
  hue: float


def sample_draw(rng: np.random.Generator, sigmas: dict[str, float] = SIGMAS) -> Draw:
  """The code's `sample_img_augment_params`: gamma and contrast are exp(N(sigma^2, sigma) / ln 2),
  so that their log2 has mean sigma^2."""
  translation = rng.normal(scale=sigmas['translation'], size=2)
  scale = rng.normal(loc=1.0, scale=sigmas['scale'])
  rotation = rng.normal(scale=sigmas['rotation'])
  gamma = math.exp(rng.normal(loc=sigmas['gamma'] ** 2, scale=sigmas['gamma']) / math.log(2))
  contrast = math.exp(rng.normal(loc=sigmas['contrast'] ** 2, scale=sigmas['contrast'])
                      / math.log(2))
  hue = rng.normal(scale=sigmas['hue'])
  return Draw((float(translation[0]), float(translation[1])), float(scale), float(rotation),
              gamma, contrast, float(hue))


def draw_for_copy(seed: int, copy: int) -> Draw:
  """The draw of copy `copy`: a pure function of (seed, copy)."""
  return sample_draw(np.random.default_rng([seed, copy]))


# ---------------------------------------------------------------- the image operations
def similarity_warp(pixels: np.ndarray, draw: Draw) -> np.ndarray:
  """[H, W, C] floats -> the same size, resampled at draw's similarity transform.

  Output pixel (row r, column c) reads the input at A ((c, r) - centre) + centre + translation,
  A = scale * rotation, in (x, y) = (column, row). The centre is (H / 2, W / 2) taken as (x, y):
  the code passes `np.array(img.shape[:2]) / 2.0`, rows first, to scikit-image's (x, y)
  transforms, so its warps turn about that point, and so do these.
  """
  height, width = pixels.shape[:2]
  centre = np.array([height / 2.0, width / 2.0])                    # as (x, y), as the code does
  cos, sin = math.cos(draw.rotation), math.sin(draw.rotation)
  matrix = draw.scale * np.array([[cos, -sin], [sin, cos]])
  rows, cols = np.mgrid[0:height, 0:width].astype(pixels.dtype)
  offset = np.stack([cols, rows], axis=-1) - centre
  source = (offset @ matrix.T + centre + np.asarray(draw.translation)).astype(pixels.dtype)
  warped = bicubic_sample(pixels, source[..., 1], source[..., 0])
  return np.clip(warped, pixels.min(), pixels.max())


def catmull_rom_weights(fraction: np.ndarray) -> tuple[np.ndarray, ...]:
  """The weights of the taps at -1, 0, 1, 2 for a point `fraction` in [0, 1) past tap 0: Keys'
  cubic convolution with a = -0.5 (preprocess.cubic_kernel) written as its polynomials."""
  t, t2, t3 = fraction, fraction * fraction, fraction * fraction * fraction
  return (0.5 * (-t3 + 2 * t2 - t), 0.5 * (3 * t3 - 5 * t2 + 2), 0.5 * (-3 * t3 + 4 * t2 + t),
          0.5 * (t3 - t2))


def bicubic_sample(pixels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """pixels [H, W, C] at fractional (rows, cols) of any shape S -> [*S, C]: Catmull-Rom over the
  4x4 neighbours, edge pixels repeated outside (scikit-image's bicubic_interpolation)."""
  height, width = pixels.shape[:2]
  top, left = np.floor(rows), np.floor(cols)
  row_weights, col_weights = catmull_rom_weights(rows - top), catmull_rom_weights(cols - left)
  top, left = top.astype(np.intp), left.astype(np.intp)
  flat = pixels.reshape(height * width, -1)            # one flat gather per tap is fastest
  columns = [np.clip(left + offset, 0, width - 1) for offset in (-1, 0, 1, 2)]
  col_weights = [weight[..., None] for weight in col_weights]
  result = 0.0
  for offset, row_weight in zip((-1, 0, 1, 2), row_weights):
    row_start = np.clip(top + offset, 0, height - 1) * width
    row = 0.0
    for column, col_weight in zip(columns, col_weights):
      row = row + col_weight * flat[row_start + column]
    result = result + row_weight[..., None] * row
  return result


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
  """[..., 3] RGB in [0, 1] -> HSV in [0, 1] (scikit-image's rgb2hsv: grey has hue and
  saturation 0)."""
  value = rgb.max(axis=-1)
  delta = value - rgb.min(axis=-1)
  safe_delta = np.where(delta > 0, delta, 1.0)
  saturation = np.where(delta > 0, delta / np.where(value > 0, value, 1.0), 0.0)
  red, green, blue = np.moveaxis(rgb, -1, 0)
  hue = np.where(value == red, (green - blue) / safe_delta,
                 np.where(value == green, 2.0 + (blue - red) / safe_delta,
                          4.0 + (red - green) / safe_delta))
  hue = np.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
  return np.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
  """[..., 3] HSV in [0, 1] -> RGB in [0, 1] (scikit-image's hsv2rgb)."""
  hue, saturation, value = np.moveaxis(hsv, -1, 0)
  sector = np.floor(hue * 6.0)
  fraction = hue * 6.0 - sector
  sector = sector.astype(int) % 6
  p = value * (1 - saturation)
  q = value * (1 - fraction * saturation)
  t = value * (1 - (1 - fraction) * saturation)
  choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value),
             (value, p, q)]
  channels = [np.choose(sector, [choice[index] for choice in choices]) for index in range(3)]
  return np.stack(channels, axis=-1)


def augment(pixels: np.ndarray, draw: Draw) -> np.ndarray:
  """The code's `img_augment` on an RGB image [H, W, 3] in [0, 1] (dataset/augment.py)."""
  warped = similarity_warp(pixels, draw)
  gamma_corrected = warped ** draw.gamma
  hsv = rgb_to_hsv(gamma_corrected)
  hsv[..., 1:] **= draw.contrast
  hsv[..., 0] = (hsv[..., 0] + draw.hue) % 1.0
  return np.clip(hsv_to_rgb(hsv), 0.0, 1.0)


# ---------------------------------------------------------------- a source of copies
class AugmentedCopies(Source):
  """`copies` augmented copies of a source's images in `splits`, as one split 'train', in the
  code's order: copy i is the (i mod n)-th of those images, augmented with draw_for_copy(seed, i).

  `load` returns the augmented image as float pixels in [0, 255], which `preprocess` takes
  like a decoded image.
  """

  def __init__(self, source: Source, copies: int, seed: int,
               splits: tuple[str, ...] = ('train', 'validation')):
    originals = [example for example in source.examples if example.split in splits]
    if not originals:
      raise DataError(f'{source.name} has no images in {splits} to augment.')
    self.source, self.seed, self._originals = source, seed, originals
    self.name = augmented_name(source.name, copies, seed)
    self.crop, self.attribute_names = source.crop, source.attribute_names
    self.attribute_kind = source.attribute_kind
    self.examples = [Example(f'{originals[copy % len(originals)].key}@{copy}', 'train',
                             originals[copy % len(originals)].attributes)
                     for copy in range(copies)]

  def load(self, example: Example) -> tuple[np.ndarray, np.ndarray]:
    copy = int(example.key.rpartition('@')[2])
    image, attributes = self.source.load(self._originals[copy % len(self._originals)])
    rgb = np.asarray(image.convert('RGB') if isinstance(image, Image.Image) else image,
                     np.float32) / 255.0
    return 255.0 * augment(rgb, draw_for_copy(self.seed, copy)), attributes
