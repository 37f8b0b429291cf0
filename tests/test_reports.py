"""Small pieces of the training loop's reporting and start-up, against hand-computed values."""
import ml_collections
import numpy as np

from vaegan_jax import checkpoints, main, metric_writers, train


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
