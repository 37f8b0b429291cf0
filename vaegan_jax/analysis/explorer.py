"""What vaegan-explore shows, as uint8 images: a trained run's faces, their reconstructions,
attribute edits (the paper's Fig. 5), interpolations, samples and a conditional run's toggles.

Every image is decoded by the jitted encode and decode that the figures use (analysis/runs.py),
so the page shows what `vaegan-figures` draws. The page itself is explore_page.py.

Attribute vectors are computed as `vaegan-figures --figure=attributes` computes them (mean z
with the attribute minus mean z without, over the first `num_encode` training images), once per
checkpoint, and kept in the run folder as explorer/attribute_vectors-step_STEP-encoded_N.npz,
written whole through the project's no-follow writer and read back as hostile.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
from absl import logging
from PIL import Image

from vaegan_jax import files, folders
from vaegan_jax.analysis import attributes, runs
from vaegan_jax.data import input_pipeline, prepared_documents, preprocess, sources
from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.model import priors
from vaegan_jax.training import train

MAX_SAMPLES = 64          # images in one sample grid
MAX_INTERPOLATION = 32    # images along one interpolation


class ExplorerError(ValueError):
  """A request the page cannot serve; its message is the one line the page and console show."""


@dataclasses.dataclass(frozen=True)
class AttributeVectors:
  """The dataset's attributes that vary over the encoded images, and their vectors [A, L]."""
  names: tuple[str, ...]
  vectors: np.ndarray
  encoded: int


@dataclasses.dataclass
class Explorer:
  run: runs.Run
  test_split: input_pipeline.PreparedSplit
  train_split: input_pipeline.PreparedSplit
  spec: preprocess.PreprocessSpec        # what prepare did to every image: uploads get the same
  limits: sources.ImageLimits
  vectors: AttributeVectors | None       # None for a conditional run (it takes y instead)

  # ---- faces
  def test_face(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(test image `index`, uint8 [R, R, C]; its attributes [A], bool or real)."""
    if not 0 <= index < len(self.test_split):
      raise ExplorerError(f'Test image {index} does not exist: the test split has '
                          f'{len(self.test_split)} images (0 to {len(self.test_split) - 1}).')
    read = self.test_split.read([index])
    return read['image'][0], read['attributes'][0]

  def uploaded_face(self, data: bytes) -> np.ndarray:
    """An uploaded image file of any size -> uint8 [R, R, C] by the dataset's own crop, blur and
    resize, under data.max_image_bytes and data.max_image_pixels."""
    if len(data) > self.limits.max_bytes:
      raise ExplorerError(f'The upload is {len(data):,} bytes, over data.max_image_bytes='
                          f'{self.limits.max_bytes:,}; upload a smaller image.')
    try:
      image = self.limits.decode(data)
    except files.UnsafeFile as error:
      raise ExplorerError(f'The upload was not decoded: {error}') from None
    except Exception as error:     # PIL raises many types for a file that is not an image
      raise ExplorerError(f'The upload is not an image PIL can read ({type(error).__name__}); '
                          f'upload a PNG or JPEG.') from None
    return preprocess.preprocess(framed(preprocess.to_eight_bit(image), self.spec.crop),
                                 self.spec)

  def conditions(self, attribute_row: np.ndarray | None) -> np.ndarray | None:
    """A conditional run's y [1, A'] for one image's attributes; None for other runs or for an
    upload, whose attributes are unknown (its y is then all absent, -1)."""
    if not self.run.condition_on:
      return None
    if attribute_row is None:
      return -np.ones((1, len(self.run.condition_on)), np.float32)
    return self.run.conditions(np.asarray(attribute_row)[None], self.test_split.attribute_names)

  def encode(self, image: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """The encoder's mean [L] of one uint8 image."""
    if self.run.networks.encoder is None:
      raise ExplorerError(f'{self.run.workdir} is a gan run: it has no encoder, so it cannot '
                          f'reconstruct or edit a face; its samples are on the Samples tab.')
    return self.run.encode(image[None], y)[0]

  def decode(self, latents: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """uint8 images [N, R, R, C] of latents [N, L] (y [N, A'] for a conditional run)."""
    return preprocess.to_uint8(self.run.decode(np.asarray(latents, np.float32), y))

  # ---- what the page's controls ask for
  def edited(self, z: np.ndarray, strengths: Sequence[float], y: np.ndarray | None = None
             ) -> np.ndarray:
    """decode(z + sum_i a_i v_i): the face with its attribute vectors added (Fig. 5)."""
    moved = z if self.vectors is None else z + np.asarray(strengths, np.float32) @ self.vectors.vectors
    return self.decode(moved[None], y)[0]

  def interpolation(self, start: np.ndarray, end: np.ndarray, steps: int,
                    y: np.ndarray | None = None) -> np.ndarray:
    """[steps, R, R, C]: decodes along the line from one code to the other, ends included."""
    if not 2 <= steps <= MAX_INTERPOLATION:
      raise ExplorerError(f'Interpolation steps must be 2 to {MAX_INTERPOLATION}, not {steps}.')
    y = None if y is None else np.repeat(y, steps, axis=0)
    return self.decode(attributes.interpolate(start, end, steps), y)

  def samples(self, prior: str, seed: int, count: int) -> np.ndarray:
    """[count, R, R, C] decoded from `prior` (standard, or a fit to the codes: model/priors.py),
    the same for the same seed; a conditional run draws them for the first test images' y."""
    if not 1 <= count <= MAX_SAMPLES:
      raise ExplorerError(f'Samples must number 1 to {MAX_SAMPLES}, not {count}.')
    try:
      latents = self.run.prior(priors.check_spec(prior)).sample(count, seed)
    except priors.PriorError as error:
      raise ExplorerError(str(error)) from None
    except ValueError as error:                         # a gan run: no encoder to fit to
      raise ExplorerError(f'Prior {prior}: {error}') from None
    y = None
    if self.run.condition_on:
      test = self.test_split.read(np.arange(count) % len(self.test_split))
      y = self.run.conditions(test['attributes'], self.test_split.attribute_names)
    return self.decode(latents, y)

  def toggled(self, z: np.ndarray, on: Sequence[str]) -> np.ndarray:
    """A conditional run's decode of z with y set by the toggles, z fixed: +1 for the
    attributes in `on`, -1 for the others (as conditional_toggles_*.png)."""
    y = np.array([[1.0 if name in on else -1.0 for name in self.run.condition_on]], np.float32)
    return self.decode(z[None], y)[0]

  def status(self) -> str:
    """One line: the run, its step, the checkpoint loaded and its last FID."""
    quality = train.last_quality(folders.Folder(self.run.workdir),
                                 self.run.config.quality.sampler)
    return (f'{self.run.workdir}: {self.run.config.model.kind} at step {self.run.step} '
            f'(checkpoint {os.path.join(self.run.workdir, "checkpoints", str(self.run.step))}); '
            f'{quality}')


# The frames the fixed crops were cut from: an upload is brought to its dataset's frame first.
FRAMES = {'celeba': (178, 218), 'lfw': (250, 250)}      # (width, height) of the source images


def framed(image: Image.Image, crop: str) -> Image.Image:
  """An upload of any size in the frame its dataset's crop expects: for CelebA's fixed window
  (aligned 178x218 images) and LFW's (250x250), the largest centred part of that aspect,
  resized to that frame, so that a face centred as in those sets lands where their crop cuts;
  'centre' takes any image as it is."""
  if crop not in FRAMES:
    return image
  width, height = FRAMES[crop]
  scale = min(image.width / width, image.height / height)
  box_width, box_height = width * scale, height * scale
  left, top = (image.width - box_width) / 2, (image.height - box_height) / 2
  return image.resize((width, height), Image.Resampling.BICUBIC,
                      box=(left, top, left + box_width, top + box_height))


# ---------------------------------------------------------------- opening a run
def open_explorer(workdir: str, data_dir: str | None = None, num_encode: int = 10_000
                  ) -> Explorer:
  """The run's newest committed checkpoint, its dataset (in data_dir, default the run's) and
  its attribute vectors; ExplorerError with one line where any is missing or unusable."""
  workdir = os.path.expanduser(workdir)
  try:
    run = runs.load_run(workdir)
    test_split = run.split('eval_split', data_dir)
    train_split = run.split('train_split', data_dir)
    crop = prepared_documents.read(test_split.path).crop
  except (runs.RunNotFound, DataError, OSError, ValueError) as error:
    raise ExplorerError(f'{type(error).__name__}: {error}'.replace('\n', ' ')) from None
  data = run.config.data
  explorer = Explorer(
      run=run, test_split=test_split, train_split=train_split,
      spec=preprocess.PreprocessSpec(crop=crop, resolution=run.config.model.resolution,
                                     channels=run.config.model.image_channels),
      limits=sources.ImageLimits(data.max_image_bytes, data.max_image_pixels), vectors=None)
  if not run.condition_on and run.networks.encoder is not None:
    explorer.vectors = cached_vectors(explorer, num_encode)
  return explorer


def cached_vectors(explorer: Explorer, num_encode: int) -> AttributeVectors:
  """The run's attribute vectors over its first `num_encode` training images: the kept file of
  this checkpoint, or computed now and kept. A kept file that is not a usable one is computed
  again (one log line)."""
  run, split = explorer.run, explorer.train_split
  count = min(num_encode, len(split))
  workdir = folders.Folder(run.workdir)
  name = f'explorer/attribute_vectors-step_{run.step}-encoded_{count}.npz'
  if workdir.exists(name):
    try:
      return _checked_vectors(files.read_npz(workdir.path(name), _most_bytes(split, run)), split,
                              run.config.model.latent_dim, count)
    except (files.UnsafeFile, ExplorerError) as error:
      logging.warning('%s is not a usable attribute-vector file (%s); computing them again.',
                      workdir.path(name), error)
  encoded = split.read(np.arange(count))
  present = attributes.presence(encoded['attributes'])
  columns = np.flatnonzero((present.sum(axis=0) > 0) & (present.sum(axis=0) < count))
  vectors = (attributes.attribute_vectors(run.encode(encoded['image']), present[:, columns])
             if columns.size else np.zeros((0, run.config.model.latent_dim), np.float32))
  try:
    workdir.write_atomically(name, lambda file: np.savez(file, vectors=vectors,
                                                         columns=columns.astype(np.int64)))
  except (OSError, folders.FolderError, files.UnsafeFile) as error:
    logging.warning('The attribute vectors are not kept in %s (%s); they are computed again '
                    'next time.', workdir.path(name), error)
  return AttributeVectors(tuple(split.attribute_names[c] for c in columns), vectors, count)


def _most_bytes(split: input_pipeline.PreparedSplit, run: runs.Run) -> int:
  return len(split.attribute_names) * (run.config.model.latent_dim * 4 + 8) + 4096


def _checked_vectors(arrays: dict[str, np.ndarray], split: input_pipeline.PreparedSplit,
                     latent_dim: int, count: int) -> AttributeVectors:
  vectors, columns = arrays.get('vectors'), arrays.get('columns')
  if (set(arrays) != {'vectors', 'columns'} or vectors.dtype != np.float32
      or columns.dtype != np.int64 or vectors.ndim != 2 or vectors.shape[1] != latent_dim
      or columns.shape != (len(vectors),) or not np.isfinite(vectors).all()
      or len(set(columns.tolist())) != len(columns)
      or not all(0 <= c < len(split.attribute_names) for c in columns.tolist())):
    raise ExplorerError('its arrays are not the vectors and columns this run would write')
  return AttributeVectors(tuple(split.attribute_names[c] for c in columns), vectors, count)
