"""A small CelebA in the real raw formats, written by the tests themselves (no generator code
shared with the package): 178x218 JPEGs in img_align_celeba.zip, the attribute file with its
count line and 40-name header, and the partition file."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
from PIL import Image

ATTRIBUTES = (
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose '
    'Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee '
    'Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes '
    'No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling '
    'Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace '
    'Wearing_Necktie Young').split()


def image_pixels(index: int) -> np.ndarray:
  """[218, 178, 3] uint8: a smooth gradient with an index-dependent colour and a bright square."""
  rows, cols = np.mgrid[0:218, 0:178]
  pixels = np.stack([(rows + 7 * index) % 256, (cols * 2 + 13 * index) % 256,
                     np.full_like(rows, (40 * index) % 256)], axis=-1)
  pixels[60 + index % 50:100 + index % 50, 50:90] = 255
  return pixels.astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def attributes_of(index: int) -> np.ndarray:
  """[40] bool, different for every index."""
  return np.random.default_rng(index).random(40) < 0.3


def partition_of(index: int, num_images: int) -> int:
  """0 train for the first 70%, 1 validation for the next 15%, 2 test for the rest."""
  return 0 if index < 0.7 * num_images else 1 if index < 0.85 * num_images else 2


def write(folder: str, num_images: int, *, extracted: bool = False,
          corrupt: tuple[int, ...] = ()) -> list[str]:
  """Write the files; images at `corrupt` indices are cut short. Returns the image names."""
  os.makedirs(folder, exist_ok=True)
  names = [f'{index + 1:06d}.jpg' for index in range(num_images)]
  if extracted:
    os.makedirs(os.path.join(folder, 'img_align_celeba'), exist_ok=True)
  else:
    archive = zipfile.ZipFile(os.path.join(folder, 'img_align_celeba.zip'), 'w')
  for index, name in enumerate(names):
    data = jpeg_bytes(image_pixels(index))
    if index in corrupt:
      data = data[:len(data) // 3]
    if extracted:
      with open(os.path.join(folder, 'img_align_celeba', name), 'wb') as file:
        file.write(data)
    else:
      archive.writestr(f'img_align_celeba/{name}', data)
  if not extracted:
    archive.close()
  with open(os.path.join(folder, 'list_attr_celeba.txt'), 'w') as file:
    file.write(f'{num_images}\n{" ".join(ATTRIBUTES)} \n')
    for index, name in enumerate(names):
      values = ' '.join(f'{1 if value else -1:2d}' for value in attributes_of(index))
      file.write(f'{name} {values}\n')
  with open(os.path.join(folder, 'list_eval_partition.txt'), 'w') as file:
    for index, name in enumerate(names):
      file.write(f'{name} {partition_of(index, num_images)}\n')
  return names
