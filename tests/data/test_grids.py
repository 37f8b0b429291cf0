"""grids.py: where each image lands in a grid, and the captioned grids' pixel repetition."""
import numpy as np

from vaegan_jax.data import grids


def test_image_grid_layout_and_scaling():
  images = np.stack([np.full((2, 2, 3), -1.0), np.full((2, 2, 3), 1.0),
                     np.full((2, 2, 3), 0.0)])
  grid = grids.image_grid(images, columns=2)
  assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3) and grid.dtype == np.uint8
  assert np.all(grid[1:3, 1:3] == 0) and np.all(grid[1:3, 4:6] == 255)
  assert np.all(grid[4:6, 1:3] == 128)                        # 0.0 -> 127.5 -> 128
  assert np.all(grid[0] == 128) and np.all(grid[:, 3] == 128)  # borders
  assert np.all(grid[4:6, 4:6] == 128)                        # the empty cell
  grey = grids.image_grid(np.zeros((1, 2, 2, 1)), columns=1)
  assert grey.shape == (4, 4, 3)


def test_captioned_grid_repeats_pixels_and_adds_a_caption_band():
  images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3))
  plain = grids.image_grid(images, columns=2)
  shown = grids.captioned_grid(images, columns=2, caption='samples | step 7')
  band = grids.CAPTION_HEIGHT
  assert shown.shape == (3 * plain.shape[0] + band, 3 * plain.shape[1], 3)   # 32 px * 3 = 96
  np.testing.assert_array_equal(shown[band:], plain.repeat(3, axis=0).repeat(3, axis=1))
  caption = shown[:band]
  assert (caption == 255).mean() > 0.8 and (caption < 128).any()            # white, with text
  big = grids.captioned_grid(np.zeros((1, 128, 128, 3)), columns=1, caption='x')
  assert big.shape == (130 + band, 130, 3)                                  # 128 px: no repeat
