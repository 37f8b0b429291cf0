r"""The embedded default: VAE/GAN on synthetic CelebA-format faces, sized for a 2-core CPU.

  vaegan-train --workdir=runs/synthetic        # the same as --config=vaegan_jax/configs/synthetic.py

On first use it draws 30,000 synthetic faces in CelebA's raw format into
~/tensorflow_datasets/raw/synthetic_30000 (about 25 s) and prepares them at 32x32 (about 20 s);
later runs reuse both. The model is the paper's VAE/GAN at 32x32 with narrower layers. On a
2-core CPU it reaches recognisable faces (hair, skin, eyes, glasses, hats) in about 10-15
minutes; grids appear in the workdir's images/ folder as it trains.
"""
from __future__ import annotations

import ml_collections

from vaegan_jax.configs import celeba64


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """celeba64's method at 32x32 with CPU-sized networks; `arg` is a model kind (default vaegan)."""
  config = celeba64.get_config('32')
  config.global_batch_size = 64
  config.num_train_steps = 800
  config.model.update(dict(
      kind=arg or 'vaegan',
      latent_dim=32,
      encoder_hidden_features=256,
      decoder_dense_channels=64,
      discriminator_hidden_features=128,
      encoder_channels=(32, 64),
      decoder_channels=(64, 32),
      discriminator_channels=(16, 64, 64),
  ))
  config.data.update(dict(name='synthetic', synthetic_images=30_000, flip='example'))
  config.log_every_steps = 50
  config.image_every_steps = 100
  config.eval_every_steps = 400
  config.eval_batches = 10
  config.checkpoint_every_steps = 200
  return config
