"""Where training reports go: metrics.jsonl, TensorBoard event files and PNG image grids
(data/grids.py lays them out).

TensorBoard files are written by tensorboardX, which needs no TensorFlow. Only process 0 writes;
the writer of any other process does nothing, so callers need no checks.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Mapping

import numpy as np
import tensorboardX
from PIL import Image

from vaegan_jax import files


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
  """An OSError while writing `what` becomes files.WriteFailed, one line with the fix."""
  try:
    yield
  except OSError as error:
    raise files.WriteFailed(
        f'Writing {what} failed ({error.strerror or error}: {error.filename}): '
        f'{files.write_failure_advice(error)}, then rerun to resume from the last '
        f'checkpoint.') from None


def drop_records_after(path: str, step: int) -> int:
  """Remove the lines of the metrics.jsonl at `path` whose step is past `step` (reports of a run
  that died before its next checkpoint, which the resumed run writes again); a torn last line
  goes too. The file is replaced atomically. Returns how many lines were dropped."""
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path) as file:
    for line in file:
      try:
        record = json.loads(line)
      except ValueError:
        dropped += 1
        continue
      if record['step'] > step:
        dropped += 1
      else:
        kept.append(line if line.endswith('\n') else line + '\n')
  if dropped:
    files.write_atomically(path, lambda file: file.write(''.join(kept).encode()))
  return dropped


class MetricWriter:
  """metrics.jsonl (one JSON object per line: step, kind, then the values), TensorBoard scalars
  and images under workdir/tensorboard, PNGs under workdir/images.

  A run that starts at `start_step` (0, or the restored checkpoint's step) first drops the
  records past it, and TensorBoard is told to purge its events past it too, so that the files
  hold each step's report once, as an uninterrupted run writes it.
  """

  def __init__(self, workdir: str, enabled: bool, start_step: int = 0):
    self.enabled = enabled
    if not enabled:
      return
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.image_dir = os.path.join(workdir, 'images')
    os.makedirs(self.image_dir, exist_ok=True)
    drop_records_after(self.jsonl_path, start_step)
    self._jsonl = open(self.jsonl_path, 'a')
    self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'),
                                                   purge_step=start_step + 1)

  def write_scalars(self, step: int, kind: str, values: Mapping[str, float]) -> None:
    """kind: 'train' or 'eval'; TensorBoard tags are kind/name."""
    if not self.enabled:
      return
    values = {name: float(value) for name, value in values.items()}
    with writing(self.jsonl_path):
      self._jsonl.write(json.dumps({'step': step, 'kind': kind, **values}) + '\n')
      self._jsonl.flush()
      for name, value in values.items():
        self._tensorboard.add_scalar(f'{kind}/{name}', value, step)
      self._tensorboard.flush()

  def write_images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
    """grids: name -> [H, W, 3] uint8; saved as images/NAME_STEP.png and to TensorBoard."""
    if not self.enabled:
      return
    with writing(f'the image grids in {self.image_dir}'):
      for name, grid in grids.items():
        Image.fromarray(grid).save(os.path.join(self.image_dir, f'{name}_{step:08d}.png'))
        self._tensorboard.add_image(name, grid, step, dataformats='HWC')
      self._tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      try:
        with writing(self.jsonl_path):
          self._jsonl.close()
      finally:
        self._tensorboard.close()
