"""Where training reports go: metrics.jsonl, TensorBoard event files and PNG image grids
(data/grids.py lays them out), each written through the workdir's folders.Folder, never through a
link planted in it.

TensorBoard files are written by tensorboardX, which needs no TensorFlow; it opens its event
files through a writer factory of ours (FolderEvents), so they too are opened without following
links. Only process 0 writes; the writer of any other process does nothing, so callers need no
checks.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
from typing import BinaryIO, Iterator, Mapping

import numpy as np
import tensorboardX
from PIL import Image
from tensorboardX import record_writer

from vaegan_jax import console, files, folders


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
  """An OSError while writing `what` becomes folders.WriteFailed, one line with the fix."""
  try:
    yield
  except OSError as error:
    raise folders.WriteFailed(
        f'Writing {what} failed ({error.strerror or error}: {error.filename}): '
        f'{folders.write_failure_advice(error)}, then rerun to resume from the last '
        f'checkpoint.') from None


JSONL_NAME = 'metrics.jsonl'
MAX_JSONL_BYTES = 1 << 30        # a million report lines; a run writes one per log interval


def parse_record(line: str) -> dict | None:
  """A metrics.jsonl line as `MetricWriter` writes it ({'step': a count, 'kind': a name, then
  numbers by name}), or None for anything else (a torn line, or one not written here)."""
  try:
    record = json.loads(line)
  except (ValueError, RecursionError):
    return None
  if (not isinstance(record, dict) or not isinstance(record.get('step'), int)
      or isinstance(record['step'], bool) or record['step'] < 0
      or not isinstance(record.get('kind'), str)
      or not all(isinstance(value, (int, float)) and not isinstance(value, bool)
                 for name, value in record.items() if name not in ('step', 'kind'))):
    return None
  return record


def read_records(path: str) -> list[dict]:
  """Every report in the metrics.jsonl at `path` (a run someone else wrote: a regular file of
  at most 1 GiB), in file order; a torn last line (a trainer writing it) is left out, and any
  other line that is not a report is a ValueError naming its line."""
  lines = files.read_regular_file(path, MAX_JSONL_BYTES).decode('utf-8', 'replace').splitlines()
  records = []
  for number, line in enumerate(lines, 1):
    record = parse_record(line)
    if record is None and number < len(lines):
      raise ValueError(f'{path}, line {number}, is not a report vaegan-train writes (a step, a '
                       f'kind and numbers by name).')
    records += [record] if record is not None else []
  return records


def drop_records_after(workdir: folders.Folder, step: int) -> int:
  """Remove the lines of the workdir's metrics.jsonl whose step is past `step` (reports of a run
  that died before its next checkpoint, which the resumed run writes again); a torn line, or one
  that is not a report, goes too. The file is replaced atomically. Returns how many lines were
  dropped."""
  content = workdir.read_bytes(JSONL_NAME, MAX_JSONL_BYTES)
  if content is None:
    return 0
  kept, dropped = [], 0
  for line in content.decode('utf-8', errors='replace').splitlines():
    record = parse_record(line)
    if record is None or record['step'] > step:
      dropped += 1
    else:
      kept.append(line + '\n')
  if dropped:
    workdir.write_atomically(JSONL_NAME, lambda file: file.write(''.join(kept).encode()))
  return dropped


class FolderEvents:
  """tensorboardX's writer factory for event files in a folders.Folder: tensorboardX names its
  files (events.out.tfevents.TIME.HOST, predictable), and this opens them without following a
  link. A logdir is 'vaegan-folder:N/RELATIVE', N the folder's number here."""

  SCHEME = 'vaegan-folder'
  _folders: dict[int, folders.Folder] = {}
  _numbers = itertools.count()

  @classmethod
  def logdir(cls, folder: folders.Folder, relative: str) -> str:
    number = next(cls._numbers)
    cls._folders[number] = folder
    return f'{cls.SCHEME}:{number}/{relative}'

  @classmethod
  def _split(cls, path: str) -> tuple[folders.Folder, str]:
    number, _, relative = path[len(cls.SCHEME) + 1:].partition('/')
    return cls._folders[int(number)], relative

  def directory_check(self, path: str) -> None:
    folder, relative = self._split(path)
    folder.make_folder(relative)

  def open(self, path: str) -> BinaryIO:
    folder, relative = self._split(path)
    return folder.open_new(relative)


record_writer.register_writer_factory(FolderEvents.SCHEME, FolderEvents())


class MetricWriter:
  """metrics.jsonl (one JSON object per line: step, kind, then the values), TensorBoard scalars
  and images under workdir/tensorboard, PNGs under workdir/images.

  A run that starts at `start_step` (0, or the restored checkpoint's step) first drops the
  records past it, and TensorBoard is told to purge its events past it too, so that the files
  hold each step's report once, as an uninterrupted run writes it.
  """

  def __init__(self, workdir: folders.Folder, enabled: bool, start_step: int = 0):
    self.enabled = enabled
    if not enabled:
      return
    self.workdir = workdir
    self.jsonl_path = workdir.path(JSONL_NAME)
    self.image_dir = workdir.make_folder('images')
    drop_records_after(workdir, start_step)
    self._jsonl = workdir.open_append(JSONL_NAME)
    self._tensorboard = tensorboardX.SummaryWriter(FolderEvents.logdir(workdir, 'tensorboard'),
                                                   purge_step=start_step + 1)

  def write_scalars(self, step: int, kind: str, values: Mapping[str, float]) -> None:
    """kind: 'train' or 'eval'; TensorBoard tags are kind/name."""
    if not self.enabled:
      return
    values = {name: float(value) for name, value in values.items()}
    with writing(self.jsonl_path):
      self._jsonl.write((json.dumps({'step': step, 'kind': kind, **values}) + '\n').encode())
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
        self.workdir.write_atomically(f'images/{name}_{step:08d}.png', functools.partial(
            save_png, grid))
        self._tensorboard.add_image(name, grid, step, dataformats='HWC')
      self._tensorboard.flush()

  def close(self) -> None:
    """Close both files, each tried; the first failure is raised (console.closing_after)."""
    if self.enabled:
      with console.closing_after(('metrics.jsonl', self._close_jsonl),
                                 ('the TensorBoard events', self._close_tensorboard)):
        pass

  def _close_jsonl(self) -> None:
    with writing(self.jsonl_path):
      self._jsonl.close()

  def _close_tensorboard(self) -> None:
    with writing(f'the TensorBoard events in {self.workdir.path("tensorboard")}'):
      self._tensorboard.close()


def save_png(image: np.ndarray, file: BinaryIO) -> None:
  Image.fromarray(image).save(file, format='PNG')
