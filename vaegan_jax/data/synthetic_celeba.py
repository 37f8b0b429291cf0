r"""Synthetic faces in CelebA's exact raw format: the dataset that needs no download.

    python -m vaegan_jax.data.synthetic_celeba --out=DIR --num_images=30000 --seed=0   # or: vaegan-synthetic

writes the five files of CelebA's aligned-and-cropped release, with CelebA's names and formats:

    img_align_celeba.zip              img_align_celeba/000001.jpg ... (178 x 218 JPEGs)
    list_attr_celeba.txt              count, the 40 attribute names, then one row of 1 / -1 each
    list_eval_partition.txt           '000001.jpg 0' (0 train, 1 validation, 2 test)
    list_landmarks_align_celeba.txt   count, 10 landmark names, then x y of eyes, nose, mouth
    identity_CelebA.txt               '000001.jpg 17'

so the synthetic set goes through exactly the path real CelebA takes. Faces are drawn with PIL,
deterministically from (seed, image index). The drawn attributes are labelled truthfully
(celeba.RENDERED_ATTRIBUTES); every other CelebA attribute is -1. Faces vary in position, size,
skin, background colour and lighting. The partition follows CelebA's proportions in index order.
"""
from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import secrets
import time
import zipfile

import numpy as np
from absl import flags, logging
from PIL import Image, ImageDraw

from vaegan_jax import console, folders, ranges
from vaegan_jax.data.celeba import (ATTRIBUTE_NAMES, FILE_NAMES, HEIGHT, LANDMARK_NAMES,
                                    SPLIT_SIZES, WIDTH)

HAIR_COLOURS = {'Black_Hair': (30, 25, 22), 'Blond_Hair': (222, 190, 120),
                'Brown_Hair': (105, 70, 40), 'Gray_Hair': (160, 160, 165)}
IDENTITIES_PER_IMAGE = 1 / 20          # about 20 images of each identity, as in CelebA


@dataclasses.dataclass(frozen=True)
class Face:
  """Everything one drawing depends on; `render` is a pure function of it."""
  centre_x: float                      # face centre, pixels
  centre_y: float
  scale: float                         # 1.0 = CelebA's mean aligned face size
  skin: tuple[int, int, int]
  background_top: tuple[int, int, int]
  background_bottom: tuple[int, int, int]
  light: float                         # horizontal brightness slope, -0.3 .. 0.3
  hair: str | None                     # a HAIR_COLOURS key, or None (bald)
  bangs: bool
  eyeglasses: bool
  male: bool
  mustache: bool
  smiling: bool
  hat: bool
  lipstick: bool
  rosy_cheeks: bool
  pale_skin: bool
  identity: int


def sample_face(seed: int, index: int, num_images: int) -> Face:
  """The face of image `index` (0-based): identity traits from the identity, the rest per image."""
  num_identities = max(1, int(num_images * IDENTITIES_PER_IMAGE))
  identity = int(np.random.default_rng([seed, index, 0]).integers(num_identities))
  traits = np.random.default_rng([seed, identity, 1])
  rng = np.random.default_rng([seed, index, 2])
  male = bool(traits.random() < 0.42)
  pale_skin = bool(traits.random() < 0.1)
  skin = np.array([224, 182, 150]) * traits.uniform(0.55, 1.05) if not pale_skin else (
      np.array([245, 226, 214]) * traits.uniform(0.97, 1.03))
  bald = male and traits.random() < 0.3
  hair = None if bald else str(traits.choice(list(HAIR_COLOURS), p=[0.35, 0.2, 0.3, 0.15]))
  hat = bool(rng.random() < 0.08)
  return Face(
      centre_x=WIDTH / 2 + rng.normal(0, 3), centre_y=124 + rng.normal(0, 3),
      scale=float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
      skin=tuple(int(c) for c in np.clip(skin, 0, 255)),
      background_top=tuple(int(c) for c in rng.integers(20, 235, 3)),
      background_bottom=tuple(int(c) for c in rng.integers(20, 235, 3)),
      light=float(rng.uniform(-0.3, 0.3)), hair=hair,
      bangs=bool(hair is not None and not hat and rng.random() < 0.25),
      eyeglasses=bool(rng.random() < 0.12), male=male,
      mustache=bool(male and rng.random() < 0.25), smiling=bool(rng.random() < 0.48),
      hat=hat, lipstick=bool(not male and rng.random() < 0.6),
      rosy_cheeks=bool(rng.random() < 0.08), pale_skin=pale_skin, identity=identity)


def attributes(face: Face) -> dict[str, bool]:
  """CelebA's 40 attributes of `face`: the drawn ones truthfully, every other one False."""
  drawn = {
      'Bald': face.hair is None, 'Bangs': face.bangs, 'Eyeglasses': face.eyeglasses,
      'Male': face.male, 'Mustache': face.mustache, 'Pale_Skin': face.pale_skin,
      'Rosy_Cheeks': face.rosy_cheeks, 'Smiling': face.smiling, 'Wearing_Hat': face.hat,
      'Wearing_Lipstick': face.lipstick,
      **{name: face.hair == name for name in HAIR_COLOURS},
  }
  return {name: bool(drawn.get(name, False)) for name in ATTRIBUTE_NAMES}


def landmarks(face: Face) -> tuple[int, ...]:
  """CelebA's 10 landmark coordinates: left eye, right eye, nose, left and right mouth corner."""
  x, y, s = face.centre_x, face.centre_y, face.scale
  points = ((x - 19 * s, y - 13 * s), (x + 19 * s, y - 13 * s), (x, y + 8 * s),
            (x - 15 * s, y + 27 * s), (x + 15 * s, y + 27 * s))
  return tuple(int(round(v)) for point in points for v in point)


def render(face: Face) -> np.ndarray:
  """The face as a [218, 178, 3] uint8 RGB image."""
  x, y, s = face.centre_x, face.centre_y, face.scale
  rows = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
  background = ((1 - rows) * np.array(face.background_top)
                + rows * np.array(face.background_bottom)) * np.ones((1, WIDTH, 1))
  image = Image.fromarray(background.astype(np.uint8))
  draw = ImageDraw.Draw(image)
  box = lambda cx, cy, rx, ry: (cx - rx * s, cy - ry * s, cx + rx * s, cy + ry * s)
  hair = HAIR_COLOURS.get(face.hair)
  dark = tuple(int(c * 0.6) for c in face.skin)

  if hair is not None:                                  # hair behind the head
    long_hair = 0 if face.male else 46
    draw.rounded_rectangle(box(x, y + 6 + long_hair / 2, 50, 62 + long_hair / 2), 30 * s,
                           fill=hair)
  draw.rectangle(box(x, y + 70, 15, 25), fill=face.skin)                     # neck
  draw.ellipse(box(x, y, 40 if face.male else 37, 56), fill=face.skin)       # head
  if hair is not None:
    draw.chord(box(x, y - 32, 41, 28), 180, 360, fill=hair)                  # crown
    if face.bangs:                                      # fringe down to the eyebrows
      draw.rectangle(box(x, y - 33, 36, 11), fill=hair)
  if face.rosy_cheeks:
    for side in (-1, 1):
      draw.ellipse(box(x + side * 24 * s, y + 12 * s, 8, 6), fill=(225, 110, 110))
  brow = 3 if face.male else 2
  for side in (-1, 1):                                  # eyes and eyebrows
    ex, ey = x + side * 19 * s, y - 13 * s
    draw.ellipse(box(ex, ey, 7, 4), fill=(250, 250, 250))
    draw.ellipse(box(ex, ey, 3, 3), fill=(50, 35, 25))
    draw.line((ex - 8 * s, ey - 9 * s, ex + 8 * s, ey - 10 * s), fill=hair or dark,
              width=max(1, int(brow * s)))
  draw.polygon([(x, y - 6 * s), (x - 5 * s, y + 9 * s), (x + 5 * s, y + 9 * s)], fill=dark)
  lips = (190, 30, 60) if face.lipstick else tuple(int(c * 0.75) for c in face.skin)
  if face.smiling:
    draw.chord(box(x, y + 22 * s, 16, 10), 0, 180, fill=(250, 250, 250), outline=lips,
               width=max(1, int(3 * s)))
  else:
    draw.line((x - 14 * s, y + 27 * s, x + 14 * s, y + 27 * s), fill=lips,
              width=max(1, int(4 * s)))
  if face.mustache:
    draw.polygon([(x - 16 * s, y + 22 * s), (x, y + 16 * s), (x + 16 * s, y + 22 * s),
                  (x, y + 20 * s)], fill=hair or (40, 30, 25))
  if face.eyeglasses:
    for side in (-1, 1):
      draw.ellipse(box(x + side * 19 * s, y - 13 * s, 12, 10), outline=(15, 15, 15),
                   width=max(1, int(2 * s)))
    draw.line((x - 7 * s, y - 14 * s, x + 7 * s, y - 14 * s), fill=(15, 15, 15),
              width=max(1, int(2 * s)))
  if face.hat:
    draw.rectangle(box(x, y - 44, 54, 6), fill=(60, 60, 140))                # brim
    draw.rounded_rectangle(box(x, y - 62, 38, 18), 8 * s, fill=(60, 60, 140))
  lighting = 1.0 + face.light * np.linspace(-1.0, 1.0, WIDTH)[None, :, None]
  return np.clip(np.asarray(image, np.float32) * lighting, 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def _render_chunk(task: tuple[int, int, int, int]) -> list[tuple[bytes, Face]]:
  seed, start, stop, num_images = task
  faces = [sample_face(seed, index, num_images) for index in range(start, stop)]
  return [(encode_jpeg(render(face)), face) for face in faces]


def _zip_entry(name: str) -> zipfile.ZipInfo:
  # A fixed timestamp: the same seed gives byte-identical files.
  return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def image_name(index: int) -> str:
  """CelebA's file name of image `index` (0-based): 000001.jpg for index 0."""
  return f'{index + 1:06d}.jpg'


def partition_of(index: int, num_images: int) -> int:
  """0 train, 1 validation, 2 test, by CelebA's proportions in index order."""
  total = sum(SPLIT_SIZES.values())
  train_end = round(num_images * SPLIT_SIZES['train'] / total)
  validation_end = train_end + round(num_images * SPLIT_SIZES['validation'] / total)
  return 0 if index < train_end else (1 if index < validation_end else 2)


STAGING_PREFIX = '.synthetic-'      # then the writer's pid


def remove_stale_staging(out: folders.Folder) -> None:
  """Delete the staging folders that writers killed before their cleanup left (SIGKILL): those
  whose pid no longer runs on this host."""
  for name in out.list():
    if not name.startswith(STAGING_PREFIX):
      continue
    pid = name[len(STAGING_PREFIX):].split('-')[0]
    if pid.isdigit() and _running(int(pid)):
      continue
    logging.info('Removing %s, left by an interrupted vaegan-synthetic.', name)
    out.remove_tree(name)


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:         # another user's process
    return True
  return True


def write_celeba(out: str | folders.Folder, num_images: int, seed: int = 0,
                 workers: int | None = None) -> dict[str, float]:
  """Writes the five CelebA files for `num_images` synthetic faces into the folder `out`.

  All five files are written into a hidden staging folder inside `out` and moved to their
  final names (one atomic rename each) only once all five are complete, so an interrupted run
  leaves no half-written file under a CelebA name; the staging folder is removed either way.
  Nothing is written through a link (folders.Folder).

  Returns:
    A summary: images, seconds, images_per_s, bytes.
  """
  if num_images < 1:
    raise ValueError(f'num_images={num_images}: need at least one image.')
  start_time = time.perf_counter()
  if not isinstance(out, folders.Folder):
    out = folders.Folder(out, 'the output folder', '--out').make()
  remove_stale_staging(out)
  staging = f'{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}'
  out.make_folder(staging)
  chunk = 256
  tasks = [(seed, start, min(start + chunk, num_images), num_images)
           for start in range(0, num_images, chunk)]
  workers = workers or os.cpu_count() or 1
  attribute_rows, partition_rows, landmark_rows, identity_rows = [], [], [], []
  try:
    with (out.open_new(f'{staging}/{FILE_NAMES[0]}') as zip_file,
          zipfile.ZipFile(zip_file, 'w', zipfile.ZIP_STORED) as archive,
          multiprocessing.get_context('spawn').Pool(workers) as pool):
      archive.writestr(_zip_entry('img_align_celeba/'), b'')
      index = 0
      progress = console.Progress('Drawing synthetic faces', num_images)
      for results in pool.imap(_render_chunk, tasks):
        progress.advance(len(results))
        for jpeg, face in results:
          name = image_name(index)
          archive.writestr(_zip_entry(f'img_align_celeba/{name}'), jpeg)
          labels = attributes(face)
          attribute_rows.append(name + ''.join(f' {1 if labels[a] else -1:2d}'
                                               for a in ATTRIBUTE_NAMES))
          partition_rows.append(f'{name} {partition_of(index, num_images)}')
          landmark_rows.append(name + ''.join(f' {v:5d}' for v in landmarks(face)))
          identity_rows.append(f'{name} {face.identity + 1}')
          index += 1
    progress.finish()
    texts = {
        FILE_NAMES[1]: [str(num_images), ' '.join(ATTRIBUTE_NAMES)] + attribute_rows,
        FILE_NAMES[2]: partition_rows,
        FILE_NAMES[3]: [str(num_images), ' '.join(LANDMARK_NAMES)] + landmark_rows,
        FILE_NAMES[4]: identity_rows,
    }
    for file_name, lines in texts.items():
      with out.open_new(f'{staging}/{file_name}') as file:
        file.write(('\n'.join(lines) + '\n').encode())
    for file_name in FILE_NAMES:
      out.move(f'{staging}/{file_name}', file_name)
  finally:
    out.remove_tree(staging)
  seconds = time.perf_counter() - start_time
  return dict(images=num_images, seconds=seconds, images_per_s=num_images / seconds,
              bytes=sum(os.path.getsize(out.path(name)) for name in FILE_NAMES))


def define_flags() -> None:
  """The command line's flags; defined only when run as a command, so importing this module
  next to other absl programs adds no flags."""
  flags.DEFINE_string('out', None, 'Folder for the five CelebA files.', required=True)
  flags.DEFINE_integer('num_images', 30000, 'Number of faces.',
                       lower_bound=ranges.IMAGE_COUNTS[0], upper_bound=ranges.IMAGE_COUNTS[1])
  flags.DEFINE_integer('seed', 0, 'Seed; the same seed gives the same files.',
                       lower_bound=ranges.SEEDS[0], upper_bound=ranges.SEEDS[1])
  flags.DEFINE_integer('workers', 0, 'Processes drawing faces (0: one per core).',
                       lower_bound=ranges.WORKERS[0], upper_bound=ranges.WORKERS[1])


def main(argv: list[str]) -> None:
  del argv
  args = flags.FLAGS
  summary = write_celeba(args.out, args.num_images, args.seed, args.workers or None)
  logging.info('Wrote %d synthetic CelebA images to %s in %.1f s (%.0f images/s, %.1f MB).',
               summary['images'], args.out, summary['seconds'], summary['images_per_s'],
               summary['bytes'] / 1e6)


def run() -> None:
  """Entry point of the `vaegan-synthetic` console script."""
  define_flags()
  console.run_main('vaegan-synthetic', main, (ValueError, folders.FolderError))


if __name__ == '__main__':
  run()
