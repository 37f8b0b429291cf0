"""Where training reports go: metrics.jsonl, TensorBoard event files and PNG image grids.

TensorBoard files are written by tensorboardX, which needs no TensorFlow. Only process 0 writes;
the writer of any other process does nothing, so callers need no checks.
"""
from __future__ import annotations

import json
import logging as std_logging
import math
import os
from typing import Mapping

import numpy as np
import tensorboardX
from absl import logging
from PIL import Image, ImageDraw, ImageFont

from vaegan_jax import preprocess


def quiet_library_logs() -> None:
  """Console logs: this package's INFO lines, and only the warnings of orbax, tfds and jax
  (orbax alone logs dozens of INFO lines per checkpoint)."""
  own = f'{os.sep}vaegan_jax{os.sep}'
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or own in record.pathname)


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


class MetricWriter:
  """metrics.jsonl (one JSON object per line: step, kind, then the values), TensorBoard scalars
  and images under workdir/tensorboard, PNGs under workdir/images."""

  def __init__(self, workdir: str, enabled: bool):
    self.enabled = enabled
    if not enabled:
      return
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.image_dir = os.path.join(workdir, 'images')
    os.makedirs(self.image_dir, exist_ok=True)
    self._jsonl = open(self.jsonl_path, 'a')
    self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write_scalars(self, step: int, kind: str, values: Mapping[str, float]) -> None:
    """kind: 'train' or 'eval'; TensorBoard tags are kind/name."""
    if not self.enabled:
      return
    values = {name: float(value) for name, value in values.items()}
    self._jsonl.write(json.dumps({'step': step, 'kind': kind, **values}) + '\n')
    self._jsonl.flush()
    for name, value in values.items():
      self._tensorboard.add_scalar(f'{kind}/{name}', value, step)
    self._tensorboard.flush()

  def write_images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
    """grids: name -> [H, W, 3] uint8; saved as images/NAME_STEP.png and to TensorBoard."""
    if not self.enabled:
      return
    for name, grid in grids.items():
      Image.fromarray(grid).save(os.path.join(self.image_dir, f'{name}_{step:08d}.png'))
      self._tensorboard.add_image(name, grid, step, dataformats='HWC')
    self._tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tensorboard.close()
