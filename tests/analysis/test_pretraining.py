"""The pretraining experiment (the paper's section 4.3): its scoring by hand, probes that learn
what features hold and nothing from noise, and the command on tiny runs."""
import json
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from PIL import Image

from tiny_runs import REPO, subprocess_env
from vaegan_jax.analysis import pretraining, runs
from vaegan_jax.configs import tiny
from vaegan_jax.data import prepare
from vaegan_jax.training import checkpoints, state
from vaegan_jax import folders


def test_mean_and_majority_accuracy_by_hand():
  labels = np.array([[1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]], bool)
  logits = np.array([[2., -1, 5], [1, -3, 5], [-1, 2, 5], [-2, 2, 5]])
  varying = np.array([True, True, False])
  # column 0: right, right, right, wrong -> 3/4; column 1: right, wrong, right, right -> 3/4
  assert pretraining.mean_accuracy(logits, labels, varying) == pytest.approx(0.75)
  train_labels = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 1]], bool)  # majority: 1, 0
  # answering (1, 0): column 0 right 3/4, column 1 right 1/4 -> 0.5
  assert pretraining.majority_accuracy(train_labels, labels, varying) == pytest.approx(0.5)


def test_label_budgets_nest_and_refuse_counts_beyond_the_split():
  small, large = (pretraining.labelled_subset(1000, count, seed=3) for count in (10, 100))
  np.testing.assert_array_equal(small, large[:10])
  assert len(set(large)) == 100
  assert not np.array_equal(small, pretraining.labelled_subset(1000, 10, seed=4))
  assert pretraining.parse_budgets(['all', '10', '10', '3'], 50) == [3, 10, 50]
  with pytest.raises(ValueError, match='has 50 labelled images'):
    pretraining.parse_budgets(['100'], 50)


class Pixels(nn.Module):
  """A body that passes the pixels on: the probe sees exactly what the images encode."""

  def __call__(self, images, train):
    return images.reshape(images.shape[0], -1)


def test_a_probe_learns_what_its_features_encode_and_nothing_from_noise():
  # Attribute 0 is written in the images (every pixel bright or dark, under noise); attribute 1
  # is a coin flip that nothing in the image shows.
  rng = np.random.default_rng(0)
  count = 600
  labels = rng.random((count, 2)) < 0.5
  noise = rng.integers(-60, 60, (count, 4, 4, 1))
  images = np.clip(128 + np.where(labels[:, :1, None, None], 40, -40) + noise, 0, 255
                   ).astype(np.uint8)
  read = lambda indices: {'image': images[indices], 'attributes': labels[indices]}
  train, test = np.arange(400), np.arange(400, count)
  model = pretraining.Classifier(Pixels(), num_outputs=2)
  variables = pretraining.initial_variables(model, None, (4, 4, 1), seed=0)
  varying = np.array([True, True])
  trained = pretraining.train_classifier(model, variables, read, train, varying,
                                         pretraining.Budget(steps=300, learning_rate=1e-2),
                                         seed=0)
  logits = pretraining.predict_logits(model, trained, images[test])
  encoded = pretraining.mean_accuracy(logits, labels[test], np.array([True, False]))
  coin = pretraining.mean_accuracy(logits, labels[test], np.array([False, True]))
  assert encoded > 0.95, encoded
  assert abs(coin - 0.5) < 0.1, coin


def test_a_frozen_body_is_left_as_trained_and_a_fine_tuned_one_changes(tmp_path):
  config = tiny.get_config('vaegan')
  trained = state.create_training(config, seed=1)
  run = runs.Run(workdir='unsaved', config=config, networks=trained.networks,
                 state=jax.device_get(trained.initial_state), step=0)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (32, 16, 16, 3), np.uint8)
  read = lambda indices: {'image': images[indices], 'attributes': rng.random((len(indices), 3))
                          < 0.5}
  budget = pretraining.Budget(steps=2, batch_size=8)
  for method, frozen in (('probe_mu', True), ('probe_discriminator', True), ('finetune', False)):
    model, body = pretraining.method_model(run, method, 3, 'conv3')
    start = pretraining.initial_variables(model, body, (16, 16, 3), seed=0)
    network = next(iter(start['params']['body'].values()))
    original = run.state.discriminator if method == 'probe_discriminator' else run.state.encoder
    for got, expected in zip(jax.tree.leaves(network), jax.tree.leaves(original.params)):
      np.testing.assert_array_equal(got, expected)      # the run's weights, put in place
    end = pretraining.train_classifier(model, start, read, np.arange(32), np.ones(3, bool),
                                       budget, seed=0)
    body_changed = any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(start['params']['body']), jax.tree.leaves(end['params']['body'])))
    stats_changed = any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(start['batch_stats']), jax.tree.leaves(end['batch_stats'])))
    assert body_changed == stats_changed == (not frozen), method
    assert not np.array_equal(start['params']['head']['kernel'], end['params']['head']['kernel'])


def test_the_command_writes_one_row_per_budget_method_and_run(tmp_path):
  data_dir = str(tmp_path / 'data')
  for seed, kind in enumerate(('vae', 'vaegan', 'gan')):
    config = tiny.get_config(kind)
    config.data.data_dir = data_dir
    with checkpoints.Checkpointer(folders.Folder(str(tmp_path / kind)).make(), keep=1) as checkpointer:
      checkpointer.save(0, state.create_training(config, seed=seed).initial_state,
                        {'next_batch': 0}, config)
  prepare.ensure_prepared(config.data, 16, 3)
  out = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, '-m', 'vaegan_jax.analysis.pretraining', f'--run=VAE={tmp_path / "vae"}',
       f'--run=VAE/GAN={tmp_path / "vaegan"}', f'--run=GAN={tmp_path / "gan"}',
       '--labels=10,all', '--seeds=2', '--steps=2', '--batch_size=8', '--num_test=40',
       f'--out={out}'], cwd=REPO, capture_output=True, text=True,
      env=subprocess_env())
  assert result.returncode == 0, result.stderr[-3000:]
  table = json.load(open(out / 'pretraining.json'))
  num_train = table['task']['num_train']
  expected = {(run, method, labels) for labels in (10, num_train) for run, method in (
      ('VAE', 'probe_mu'), ('VAE', 'finetune'), ('random init', 'scratch'),
      ('VAE/GAN', 'probe_mu'), ('VAE/GAN', 'finetune'), ('VAE/GAN', 'probe_discriminator'),
      ('GAN', 'probe_discriminator'))}     # the tiny VAE and VAE/GAN share one encoder shape
  got = [(row['run'], row['method'], row['labels']) for row in table['rows']]
  assert sorted(got) == sorted(expected)
  for row in table['rows']:
    assert len(row['accuracies']) == 2 and all(0 <= a <= 1 for a in row['accuracies'])
    assert row['accuracy_mean'] == pytest.approx(np.mean(row['accuracies']))
  assert [row['labels'] for row in table['majority']] == [10, num_train]
  assert table['settings']['discriminator_layer'] == {'VAE/GAN': 'conv3', 'GAN': 'conv3'}
  assert Image.open(out / 'pretraining.png').mode == 'RGB'

  refused = subprocess.run(
      [sys.executable, '-m', 'vaegan_jax.analysis.pretraining', f'--run=VAE={tmp_path / "vae"}',
       '--labels=100000', f'--out={out}'], cwd=REPO, capture_output=True, text=True,
      env=subprocess_env())
  assert refused.returncode != 0 and 'vaegan-pretraining: --labels=100000' in refused.stderr
  assert 'Traceback' not in refused.stderr
