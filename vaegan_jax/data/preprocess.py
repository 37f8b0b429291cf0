"""Image preprocessing, done once by `prepare`: crop, Gaussian blur, bicubic resize, channels.

The authors' CelebA preprocessing (dataset/celeba.py, `_resize`, in their repository
andersbll/autoencoding_beyond_pixels): crop rows 40:188 and columns 15:163 of the 178x218 aligned
image (148x148), blur with sigma = sqrt(148 / R) / 2, resize bicubically to RxR.
The blur stands in for the anti-aliasing a plain bicubic sampler lacks, so the resize here samples
the bicubic kernel at the output pixel centres without widening it (PIL's resize widens it when
shrinking, which would blur twice).

Blur and resize are both linear and separable, so each axis is one [R, side] matrix and a whole
image is `rows @ image @ columns.T` per channel: exact, and fast enough to need no special code.
Images of other sources are centre-cropped to a square first, with the same blur rule.

Prepared images are stored as uint8; the networks see float32 in [-1, 1] (`to_model_range`), and
their outputs are written back as uint8 with `to_uint8`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
from PIL import Image

from vaegan_jax.data import celeba

BICUBIC_A = -0.5                       # Keys' cubic convolution, as PIL and OpenCV use
BLUR_TRUNCATE = 4.0                    # kernel radius in sigmas (scipy.ndimage's default)


CROPS = ('celeba', 'lfw', 'centre')
# The authors' LFW window (dataset/lfw.py, `_resize` with lfw_aegan.py's crop_size=150): the
# centred 150x150 square, cut before the resize.
LFW_CROP_SIDE = 150


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
  """What `prepare` does to every image.

  crop: 'celeba' (the authors' fixed 148x148 window), 'lfw' (the authors' centred 150x150
    window of LFW's 250x250 images) or 'centre' (the largest centred square).
  resolution: output side R in pixels.
  channels: 3 (grey is repeated) or 1 (colour is converted to luminance).
  """
  crop: str = 'celeba'
  resolution: int = 64
  channels: int = 3

  def __post_init__(self):
    if self.crop not in CROPS:
      raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}.")
    if self.channels not in (1, 3):
      raise ValueError(f'channels must be 1 or 3, got {self.channels}.')
    if self.resolution < 1:
      raise ValueError(f'resolution must be positive, got {self.resolution}.')


def blur_sigma(side: int, resolution: int) -> float:
  """The authors' rule, sqrt(side / R) / 2, for shrinking; no blur when not shrinking."""
  return math.sqrt(side / resolution) / 2 if side > resolution else 0.0


def gaussian_blur_matrix(size: int, sigma: float, rows: np.ndarray | None = None
                         ) -> np.ndarray:
  """[size, size] matrix of a 1-D Gaussian blur with mirrored edges (scipy's 'reflect'), or
  only its `rows`, [len(rows), size].

  Row i holds the weights of input pixels for output pixel i; identity when sigma is 0.
  """
  rows = np.arange(size) if rows is None else np.asarray(rows)
  matrix = np.zeros((len(rows), size))
  if sigma == 0:
    matrix[np.arange(len(rows)), rows] = 1.0
    return matrix
  radius = int(BLUR_TRUNCATE * sigma + 0.5)
  offsets = np.arange(-radius, radius + 1)
  weights = np.exp(-0.5 * (offsets / sigma) ** 2)
  weights /= weights.sum()
  for row, i in enumerate(rows):
    taps = reflect_index(i + offsets, size)
    np.add.at(matrix[row], taps, weights)
  return matrix


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
  """Mirror indices into [0, size) with the edge pixel repeated: -1 -> 0, size -> size - 1."""
  period = 2 * size
  index = np.mod(index, period)
  return np.where(index < size, index, period - 1 - index)


def cubic_kernel(distance: np.ndarray, a: float = BICUBIC_A) -> np.ndarray:
  """Keys' cubic convolution kernel at `distance` (support 2)."""
  d = np.abs(distance)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = ((d - 5) * d + 8) * d * a - 4 * a
  return np.where(d < 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(size: int, resolution: int) -> np.ndarray:
  """[resolution, size] matrix sampling a bicubic interpolant at the output pixel centres.

  Output pixel o sits at input coordinate (o + 0.5) * size / resolution - 0.5; taps beyond the
  edge take the edge pixel.
  """
  centres = (np.arange(resolution) + 0.5) * size / resolution - 0.5
  base = np.floor(centres).astype(int)
  matrix = np.zeros((resolution, size))
  for tap in range(-1, 3):
    source = base + tap
    weights = cubic_kernel(centres - source)
    np.add.at(matrix, (np.arange(resolution), np.clip(source, 0, size - 1)), weights)
  return matrix


@functools.lru_cache(maxsize=32)
def resize_matrix(size: int, resolution: int) -> np.ndarray:
  """[resolution, size]: blur with the authors' sigma, then sample bicubically; float32.

  Only the blur's rows that the sampling reads are made (4 per output pixel): a dense [size,
  size] blur took 392 MB for a 7000-pixel side.
  """
  sampling = bicubic_matrix(size, resolution)
  read = np.flatnonzero(sampling.any(axis=0))
  blur = gaussian_blur_matrix(size, blur_sigma(size, resolution), rows=read)
  return (sampling[:, read] @ blur).astype(np.float32)


def crop_window(height: int, width: int, crop: str) -> tuple[int, int, int]:
  """(top, left, side) of the square window `crop` names in an image of height x width."""
  if crop == 'celeba':
    top, bottom, left, right = celeba.CROP
    if height < bottom or width < right:
      raise ValueError(f'The CelebA crop needs an image of at least 178x218 (width x height); '
                       f'got {width}x{height}. Use crop=centre for other images.')
    return top, left, bottom - top
  side = min(height, width)
  if crop == 'lfw':
    if side < LFW_CROP_SIDE:
      raise ValueError(f'The LFW crop needs an image of at least {LFW_CROP_SIDE}x{LFW_CROP_SIDE}; '
                       f'got {width}x{height}. Use crop=centre for other images.')
    side = LFW_CROP_SIDE
  return (height - side) // 2, (width - side) // 2, side


def crop_square(pixels: np.ndarray, crop: str) -> np.ndarray:
  """[H, W, C] -> the square window `crop` names, [S, S, C]."""
  top, left, side = crop_window(pixels.shape[0], pixels.shape[1], crop)
  return pixels[top:top + side, left:left + side]


# What shows through transparent pixels: images with alpha are composited onto white.
ALPHA_BACKGROUND = (255, 255, 255)


def to_eight_bit(image: Image.Image) -> Image.Image:
  """An 8-bit image of the same picture: 16-bit greyscale ('I;16...', and 'I' as Pillow reads
  16-bit PNGs) is scaled by 255 / 65535, where Pillow's convert would clip it to 255; an image
  with alpha is composited onto ALPHA_BACKGROUND, where convert would keep the colour under
  transparent pixels."""
  if image.mode.startswith('I'):
    pixels = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.round(pixels / 257.0), 0, 255).astype(np.uint8), 'L')
  if image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (
      image.mode == 'P' and 'transparency' in image.info):
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, ALPHA_BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert('RGB')
  return image


def to_channels(image: Image.Image, channels: int) -> np.ndarray:
  """PIL image of any mode -> [H, W, channels] uint8: grey repeated to RGB, or RGB to luminance;
  16-bit and transparent images as `to_eight_bit` makes them."""
  image = to_eight_bit(image)
  if channels == 1:
    return np.asarray(image.convert('L'))[..., None]
  return np.asarray(image.convert('RGB'))


STRIP_ROWS = 256     # rows of the cropped square converted to float32 at a time


def preprocess(image: Image.Image | np.ndarray, spec: PreprocessSpec) -> np.ndarray:
  """A decoded image, or RGB pixels [H, W, 3] as floats in [0, 255] (an augmented copy, see
  augment.py) -> [R, R, channels] uint8, cropped, blurred and resized per `spec`.

  The square is read in strips of STRIP_ROWS rows, each converted (channels, float32) and
  multiplied in alone: a decoded image is the only full-size copy held, where a 7000x7000 PNG
  (legal under the pixel cap) took 1.33 GB as one float32 copy and its products. A square of
  at most STRIP_ROWS rows (every CelebA and LFW image) is one strip: the same arithmetic."""
  if isinstance(image, Image.Image):
    top, left, side = crop_window(image.height, image.width, spec.crop)
    strip = lambda start, stop: to_channels(
        image.crop((left, top + start, left + side, top + stop)), spec.channels)
  else:                            # PIL's luminance weights for one channel
    pixels = image @ np.array([[0.299], [0.587], [0.114]]) if spec.channels == 1 else image
    square = crop_square(pixels, spec.crop)
    side = square.shape[0]
    strip = lambda start, stop: square[start:stop]
  matrix = resize_matrix(side, spec.resolution)
  rows = 0.0
  for start in range(0, side, STRIP_ROWS):
    stop = min(start + STRIP_ROWS, side)
    part = strip(start, stop).astype(np.float32).transpose(2, 0, 1)      # [C, rows, S]
    rows = rows + matrix[:, start:stop] @ part                             # [C, R, S]
  resized = rows @ matrix.T                                                # [C, R, R]
  return np.clip(np.rint(resized), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def to_model_range(pixels: Any) -> Any:
  """uint8 pixels in [0, 255] -> float32 in [-1, 1], the networks' range (numpy or jax arrays)."""
  return pixels.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: Any) -> np.ndarray:
  """Images in [-1, 1] -> uint8 pixels, rounded and clipped: the inverse of to_model_range."""
  return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
