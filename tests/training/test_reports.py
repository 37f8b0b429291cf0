"""Small pieces of the training loop's reporting and start-up, against hand-computed values."""
import ml_collections
import numpy as np
import pytest

from vaegan_jax import folders
from vaegan_jax.training import checkpoints, main, metric_writers, train


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


def test_metrics_lines_that_are_not_reports_are_dropped_on_resume_and_refused_when_read(
    tmp_path):
  """Issue 45, item 3: a line without a step appended to metrics.jsonl was a KeyError on
  resume. The trainer drops it with the reports past its step; a reader names its line."""
  folder = folders.Folder(str(tmp_path)).make()
  lines = ['{"step": 2, "kind": "train", "loss": 1.5}', '{"kind": "eval"}',
           '{"step": "3", "kind": "train"}', '{"step": 4, "kind": "eval", "fid": [1]}',
           '{"step": 4, "kind": "train", "loss": 0.5}', '{"step": 6, "kind": "train", "loss": 0.2}',
           '{"step": 8, "kind": "tr']                           # torn by a kill
  (tmp_path / 'metrics.jsonl').write_text('\n'.join(lines))
  with pytest.raises(ValueError, match=r'metrics.jsonl, line 2, is not a report vaegan-train '
                                       r'writes'):
    metric_writers.read_records(str(tmp_path / 'metrics.jsonl'))
  assert metric_writers.drop_records_after(folder, 4) == 5
  kept = metric_writers.read_records(str(tmp_path / 'metrics.jsonl'))
  assert kept == [{'step': 2, 'kind': 'train', 'loss': 1.5},
                  {'step': 4, 'kind': 'train', 'loss': 0.5}]
  (tmp_path / 'metrics.jsonl').write_text('\n'.join(lines[:1] + lines[-1:]))
  assert metric_writers.read_records(str(tmp_path / 'metrics.jsonl')) == [
      {'step': 2, 'kind': 'train', 'loss': 1.5}]           # a torn last line: a trainer writing
