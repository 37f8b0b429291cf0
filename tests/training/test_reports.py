"""Small pieces of the training loop's reporting and start-up, against hand-computed values."""
import ml_collections
import numpy as np

from vaegan_jax.training import checkpoints, main, train


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
