"""Small pieces of the training loop's reporting and start-up, against hand-computed values."""
import ml_collections
import numpy as np

from vaegan_jax.training import checkpoints, main, metric_writers, train


def test_image_grid_layout_and_scaling():
  images = np.stack([np.full((2, 2, 3), -1.0), np.full((2, 2, 3), 1.0),
                     np.full((2, 2, 3), 0.0)])
  grid = metric_writers.image_grid(images, columns=2)
  assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3) and grid.dtype == np.uint8
  assert np.all(grid[1:3, 1:3] == 0) and np.all(grid[1:3, 4:6] == 255)
  assert np.all(grid[4:6, 1:3] == 128)                        # 0.0 -> 127.5 -> 128
  assert np.all(grid[0] == 128) and np.all(grid[:, 3] == 128)  # borders
  assert np.all(grid[4:6, 4:6] == 128)                        # the empty cell
  grey = metric_writers.image_grid(np.zeros((1, 2, 2, 1)), columns=1)
  assert grey.shape == (4, 4, 3)


def test_captioned_grid_repeats_pixels_and_adds_a_caption_band():
  images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3))
  plain = metric_writers.image_grid(images, columns=2)
  shown = metric_writers.captioned_grid(images, columns=2, caption='samples | step 7')
  band = metric_writers.CAPTION_HEIGHT
  assert shown.shape == (3 * plain.shape[0] + band, 3 * plain.shape[1], 3)   # 32 px * 3 = 96
  np.testing.assert_array_equal(shown[band:], plain.repeat(3, axis=0).repeat(3, axis=1))
  caption = shown[:band]
  assert (caption == 255).mean() > 0.8 and (caption < 128).any()            # white, with text
  big = metric_writers.captioned_grid(np.zeros((1, 128, 128, 3)), columns=1, caption='x')
  assert big.shape == (130 + band, 130, 3)                                  # 128 px: no repeat


def test_config_differences_ignore_resumable_settings():
  saved = ml_collections.ConfigDict({'num_train_steps': 10, 'seed': 0,
                                     'model': {'latent_dim': 8, 'channels': (4, 8)}})
  current = ml_collections.ConfigDict({'num_train_steps': 99, 'seed': 0,
                                       'model': {'latent_dim': 8, 'channels': (4, 8)}})
  assert checkpoints.config_differences(saved.to_dict(), current) == []
  current.model.channels = (4, 16)
  current.seed = 1
  assert checkpoints.config_differences(saved.to_dict(), current) == [
      'model.channels: checkpoint [4, 8], config [4, 16]', 'seed: checkpoint 0, config 1']


def test_console_line_shows_every_loss_term_of_the_kind():
  vae_line = train.format_line(10, 20, {'prior': 1.5, 'pixel': 30.25, 'encoder_grad_norm': 2.0},
                               64.0, 5.0)
  assert 'prior=1.5 pixel=30.25 |' in vae_line and 'grad_norm' not in vae_line
  vaegan_line = train.format_line(10, 20, {'llike': 3.0, 'decoder_gan': -1.0,
                                           'discriminator': 0.7, 'd_real': 0.5}, 64.0, 5.0)
  assert 'llike=3 decoder_gan=-1 discriminator=0.7 d_real=0.5 |' in vaegan_line
  assert vaegan_line.endswith('| 64.0 img/s | ETA 00:00:05')


def test_periodic_actions_are_due_every_n_steps_and_at_the_end():
  assert [step for step in range(1, 11) if train.is_due(step, 4, 10)] == [4, 8, 10]
  assert [step for step in range(1, 4) if train.is_due(step, 50, 3)] == [3]


def test_first_non_finite_names_step_and_metric():
  history = [(1, {'llike': np.float32(3.0), 'prior': np.float32(1.0)}),
             (2, {'llike': np.float32(np.inf), 'prior': np.float32(np.nan)})]
  assert train.first_non_finite(history) == (2, 'llike')
  assert train.first_non_finite(history[:1]) is None


def test_cluster_detection():
  assert main.in_multi_process_cluster({'TPU_WORKER_HOSTNAMES': 'host-0,host-1'})
  assert not main.in_multi_process_cluster({'TPU_WORKER_HOSTNAMES': 'localhost'})
  assert main.in_multi_process_cluster({'SLURM_NTASKS': '4'})
  assert not main.in_multi_process_cluster({'SLURM_NTASKS': '1', 'HOME': '/root'})
