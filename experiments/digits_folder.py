r"""scikit-learn's 1,797 real 8x8 grey digits as an image folder that vaegan-prepare reads.

The second dataset of the sharpness ablation (experiments/ablation_sharpness.sh): real images
that need no download. Both train/ and test/ hold all 1,797 digits, so that sample quality is
measured against every image the set has (its own test split would hold too few); labels.csv
gives each digit's class as ten binary attributes, which the domain feature extractor learns.
prepare upscales them to 32x32 with its own blur and bicubic resize: nearest-neighbour would
leave no 2-pixel-period energy, and the checkerboard index would then mean nothing.

  .venv/bin/python experiments/digits_folder.py --out=~/digits
  .venv/bin/vaegan-prepare --image_folder=~/digits --attributes_csv=~/digits/labels.csv \
      --data_dir=~/data --name=digits --resolution=32 --channels=1
"""
from __future__ import annotations

import csv
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from sklearn import datasets

from vaegan_jax import console

_OUT = flags.DEFINE_string('out', None, 'The folder to write (created; must not exist).',
                           required=True)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
  """([1797, 8, 8] uint8 in 0..255, [1797] labels) from load_digits' 0..16 intensities."""
  digits = datasets.load_digits()
  return np.round(digits.images * 255 / 16).astype(np.uint8), digits.target


def write_folder(out: str, images: np.ndarray, labels: np.ndarray) -> None:
  os.makedirs(out)
  rows = []
  for split in ('train', 'test'):
    os.makedirs(os.path.join(out, split))
    for index, (image, label) in enumerate(zip(images, labels)):
      name = f'{split}/{index:04d}.png'
      Image.fromarray(image, mode='L').save(os.path.join(out, name))
      rows.append([name] + [1 if label == digit else -1 for digit in range(10)])
  with open(os.path.join(out, 'labels.csv'), 'w', newline='') as table:
    writer = csv.writer(table)
    writer.writerow(['path'] + [f'digit_{digit}' for digit in range(10)])
    writer.writerows(rows)


def main(argv: list[str]) -> None:
  del argv
  out = os.path.expanduser(_OUT.value)
  if os.path.lexists(out):
    raise app.UsageError(f'--out={out} exists; name a new folder.')
  images, labels = digit_images()
  write_folder(out, images, labels)
  print(f'Wrote {len(images)} digits twice (train/ and test/) and labels.csv to {out}.')


if __name__ == '__main__':
  console.run_main('digits_folder.py', main)
