"""Images laid out for people to look at: the training loop's PNG grids and the figures' rows."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vaegan_jax.data import preprocess

SHOWN_IMAGE_SIZE = 96          # training grids show every image at least this many pixels wide
CAPTION_HEIGHT = 16


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
  """[N, R, R, C] in [-1, 1] -> one [rows * (R + 1) + 1, columns * (R + 1) + 1, 3] uint8 image,
  with a 1-pixel grey border; grey images are shown as RGB."""
  count, size = images.shape[0], images.shape[1]
  rows = math.ceil(count / columns)
  pixels = preprocess.to_uint8(images)
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  grid = np.full((rows * (size + 1) + 1, columns * (size + 1) + 1, 3), 128, np.uint8)
  for index in range(count):
    top, left = 1 + (index // columns) * (size + 1), 1 + (index % columns) * (size + 1)
    grid[top:top + size, left:left + size] = pixels[index]
  return grid


def captioned_grid(images: np.ndarray, columns: int, caption: str) -> np.ndarray:
  """An image grid to look at: every image repeated pixel by pixel (nearest neighbour, so no
  detail is invented) to at least SHOWN_IMAGE_SIZE pixels, under a white band with `caption`."""
  factor = math.ceil(SHOWN_IMAGE_SIZE / images.shape[1])
  grid = image_grid(images, columns).repeat(factor, axis=0).repeat(factor, axis=1)
  canvas = Image.new('RGB', (grid.shape[1], grid.shape[0] + CAPTION_HEIGHT), 'white')
  canvas.paste(Image.fromarray(grid), (0, CAPTION_HEIGHT))
  ImageDraw.Draw(canvas).text((4, 2), caption, fill='black', font=ImageFont.load_default())
  return np.asarray(canvas)
