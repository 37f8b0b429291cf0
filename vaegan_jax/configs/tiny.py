"""A tiny VAE/GAN at 16x16 for tests: the paper's structure with a handful of channels, on 300
synthetic faces, with every report and checkpoint every few steps."""
from __future__ import annotations

import ml_collections

from vaegan_jax.configs import celeba64, synthetic
from vaegan_jax.data.celeba import RENDERED_ATTRIBUTES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """celeba64's settings with small networks; `arg` is 'KIND[,conditional][,ours]' as in
  synthetic.py."""
  kind, conditional, preset = synthetic.parse_arg(arg)
  config = celeba64.get_config('ours' if preset else None)
  config.global_batch_size = 16
  config.num_train_steps = 20
  config.model.update(dict(
      kind=kind,
      condition_on=RENDERED_ATTRIBUTES[:4] if conditional else (),
      resolution=16,
      latent_dim=8,
      encoder_hidden_features=32,
      decoder_dense_channels=16,
      discriminator_hidden_features=32,
      encoder_channels=(8, 16),
      decoder_channels=(16, 8),
      discriminator_channels=(8, 16, 16),
  ))
  config.loss.feature_layer = 'conv3'
  config.data.update(dict(name='synthetic', synthetic_images=300, augmented_copies=0,
                          order='shuffled', flip='example', reader_threads=1))
  config.log_every_steps = 2
  config.image_every_steps = 3
  config.eval_every_steps = 3
  config.eval_batches = 1
  # Off here, so that each test's runs do not train an extractor; the test of the in-loop
  # metrics turns it on.
  config.quality.update(dict(every_steps=3, num_samples=32, extractor='none',
                             extractor_steps=30))
  config.checkpoint_every_steps = 3
  config.keep_checkpoints = 2
  config.grid_size = 4
  return config
