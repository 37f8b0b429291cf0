"""The authors' augmentation: its draws' statistics against the code's sigmas, the image
operations against scikit-image (the library the code used), determinism, and the augmented
copies through prepare and the training input."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from skimage import color, transform

import fake_celeba
from tiny_runs import REPO
from vaegan_jax.data import augment, dataset_layout, input_pipeline, prepare, preprocess, sources

SPEC = preprocess.PreprocessSpec(resolution=16)


def test_draw_statistics_match_the_codes_sigmas():
  draws = [augment.sample_draw(np.random.default_rng([7, index])) for index in range(20_000)]
  translation = np.array([draw.translation for draw in draws])
  log_gamma = np.log([draw.gamma for draw in draws]) * math.log(2)      # g ~ N(0.05^2, 0.05)
  log_contrast = np.log([draw.contrast for draw in draws]) * math.log(2)
  column = lambda name: np.array([getattr(draw, name) for draw in draws])
  for values, mean, std in ((translation[:, 0], 0.0, 2.0), (translation[:, 1], 0.0, 2.0),
                            (column('scale'), 1.0, 0.01), (column('rotation'), 0.0, 0.01),
                            (log_gamma, 0.05**2, 0.05), (log_contrast, 0.05**2, 0.05),
                            (column('hue'), 0.0, 0.01)):
    # 20,000 draws: the mean is within 4 standard errors, the std within 3%.
    assert abs(values.mean() - mean) < 4 * std / math.sqrt(len(values))
    assert abs(values.std() / std - 1) < 0.03


def test_draws_are_a_pure_function_of_seed_and_copy():
  assert augment.draw_for_copy(3, 17) == augment.draw_for_copy(3, 17)
  assert augment.draw_for_copy(3, 17) != augment.draw_for_copy(3, 18)
  assert augment.draw_for_copy(3, 17) != augment.draw_for_copy(4, 17)


def smooth_image(seed=0):
  """[218, 178, 3] in [0, 1]: blurred noise, so that interpolation matters."""
  noise = np.random.default_rng(seed).uniform(0, 1, (218, 178, 3))
  image = ndimage.gaussian_filter(noise, (3, 3, 0))
  return (image - image.min()) / (image.max() - image.min())


def skimage_augment(image, draw):
  """The code's img_augment (dataset/augment.py), written with scikit-image as it was."""
  centre = np.array(image.shape[:2]) / 2.0
  similarity = transform.SimilarityTransform(translation=-centre)
  similarity += transform.SimilarityTransform(scale=draw.scale, rotation=draw.rotation)
  similarity += transform.SimilarityTransform(translation=centre + np.array(draw.translation))
  warped = transform.warp(image, similarity, order=3, mode='edge')
  hsv = color.rgb2hsv(warped ** draw.gamma)
  hsv[..., 1:] **= draw.contrast
  hsv[..., 0] += draw.hue
  hsv[hsv[..., 0] > 1.0, 0] -= 1.0
  hsv[hsv[..., 0] < 0.0, 0] += 1.0
  return warped, color.hsv2rgb(hsv)


@pytest.mark.parametrize('copy', [0, 1, 2])
def test_augment_matches_scikit_image(copy):
  image = smooth_image(copy)
  draw = augment.draw_for_copy(0, copy)
  warped, augmented = skimage_augment(image, draw)
  np.testing.assert_allclose(augment.similarity_warp(image, draw), warped, atol=1e-9)
  np.testing.assert_allclose(augment.augment(image, draw), augmented, atol=1e-9)
  assert np.abs(augmented - image).max() > 0.01                    # it did change the image


def test_whole_pixel_translation_shifts_exactly_and_hsv_round_trips():
  image = smooth_image()
  shift = augment.Draw(translation=(2.0, -1.0), scale=1.0, rotation=0.0, gamma=1.0,
                       contrast=1.0, hue=0.0)
  warped = augment.similarity_warp(image, shift)
  # Output (r, c) reads input (r - 1, c + 2).
  np.testing.assert_allclose(warped[1:, :-2], image[:-1, 2:], atol=1e-12)
  np.testing.assert_allclose(augment.hsv_to_rgb(augment.rgb_to_hsv(image)), image, atol=1e-12)
  grey = np.full((2, 2, 3), 0.4)
  np.testing.assert_allclose(augment.rgb_to_hsv(grey)[..., :2], 0.0)


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('raw'))
  fake_celeba.write(folder, 20)          # 14 train, 3 validation, 3 test
  return folder


def test_copies_cycle_through_the_training_images_in_order(raw):
  source = sources.CelebAFiles(raw)
  copies = augment.AugmentedCopies(source, 40, seed=5)
  originals = [example for example in source.examples if example.split != 'test']
  assert len(originals) == 17 and len(copies.examples) == 40
  assert copies.name == 'celeba_augmented40_seed5'
  for index, example in enumerate(copies.examples):
    original = originals[index % 17]
    assert example.split == 'train' and example.key == f'{original.key}@{index}'
    np.testing.assert_array_equal(example.attributes, original.attributes)
  pixels, _ = copies.load(copies.examples[18])                     # copy 18 of image 1
  image, _ = source.load(originals[1])
  expected = 255 * augment.augment(np.asarray(image, np.float32) / 255,
                                   augment.draw_for_copy(5, 18))
  np.testing.assert_allclose(pixels, expected, atol=1e-3)
  np.testing.assert_array_equal(copies.load(copies.examples[18])[0], pixels)   # deterministic


def test_prepared_copies_are_read_in_record_order(tmp_path, raw):
  data_dir = str(tmp_path / 'data')
  copies = augment.AugmentedCopies(sources.CelebAFiles(raw), 40, seed=5)
  summary = prepare.prepare(copies, data_dir, SPEC, workers=2)
  assert summary.examples == {'train': 40}
  split = input_pipeline.open_prepared(data_dir, 'celeba_augmented40_seed5', 16, 3, 'train')
  records = split.read(np.arange(40))
  np.testing.assert_array_equal(records['image'][18],
                                preprocess.preprocess(copies.load(copies.examples[18])[0], SPEC))
  # The authors' sequential order: batch b is records b*G .. b*G + G - 1, wrapping around.
  load = input_pipeline.training_batches(split, seed=0, global_batch_size=16, local_devices=2,
                                         order='sequential')
  batch = load(2)                                         # positions 32..47 -> records 32..39, 0..7
  np.testing.assert_array_equal(batch['image'].reshape(16, 16, 16, 3),
                                records['image'][np.r_[32:40, 0:8]])


def test_command_line_writes_the_copies_and_training_finds_them(tmp_path, raw):
  command = [sys.executable, '-m', 'vaegan_jax.data.prepare', f'--raw_dir={raw}',
             f'--data_dir={tmp_path}', '--resolution=16', '--augmented_copies=30',
             '--augment_seed=2']
  done = subprocess.run(command, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO))
  assert done.returncode == 0, done.stderr
  assert 'Prepared 20 images' in done.stdout and 'Prepared 30 images (train 30)' in done.stdout
  from vaegan_jax.configs import tiny
  config = tiny.get_config()
  config.data.update(data_dir=str(tmp_path), name='celeba', synthetic_images=0,
                     augmented_copies=30, augment_seed=2)
  assert len(input_pipeline.open_training_split(config)) == 30
  config.data.augment_seed = 3
  with pytest.raises(dataset_layout.DataError, match='--augmented_copies=30 --augment_seed=3'):
    input_pipeline.open_training_split(config)
