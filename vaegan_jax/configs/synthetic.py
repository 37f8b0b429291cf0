r"""The embedded default: VAE/GAN on synthetic CelebA-format faces, sized for a 2-core CPU.

  vaegan-train --workdir=runs/synthetic        # the same as --config=vaegan_jax/configs/synthetic.py

On first use it draws 30,000 synthetic faces in CelebA's raw format into
~/tensorflow_datasets/raw/synthetic_30000 (about 25 s) and prepares them at 32x32 (about 20 s);
later runs reuse both. The model is the paper's VAE/GAN at 32x32 with narrower layers. On a
2-core CPU it reaches recognisable faces (hair, skin, eyes, glasses, hats) in about 10-15
minutes; grids appear in the workdir's images/ folder as it trains.

The config argument is the model kind, and 'conditional' conditions the networks on the 14
attributes the synthetic faces draw: `--config=vaegan_jax/configs/synthetic.py:gan,conditional`.
'ours' adds the [ours] preset past the 2016 recipe (celeba64.ours: the decoder's EMA and R1,
measured there):

  vaegan-train --config=vaegan_jax/configs/synthetic.py:ours --workdir=runs/synthetic_ours
"""
from __future__ import annotations

import ml_collections

from vaegan_jax.configs import celeba64
from vaegan_jax.data.celeba import RENDERED_ATTRIBUTES


def parse_arg(arg: str | None) -> tuple[str, bool, bool]:
  """'KIND[,conditional][,ours]' -> (kind, conditional, ours); the kind defaults to vaegan."""
  parts = [part.strip() for part in (arg or '').split(',') if part.strip()]
  conditional, preset = 'conditional' in parts, 'ours' in parts
  kinds = [part for part in parts if part not in ('conditional', 'ours')]
  if len(kinds) > 1:
    raise ValueError(f'Config argument {arg!r}: give one model kind, optionally with '
                     f'",conditional" and ",ours" (e.g. "gan,conditional").')
  return (kinds[0] if kinds else 'vaegan'), conditional, preset


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """celeba64's method at 32x32 with CPU-sized networks; `arg` as in the module docstring."""
  kind, conditional, preset = parse_arg(arg)
  config = celeba64.get_config('32')
  config.global_batch_size = 64
  config.num_train_steps = 800
  config.model.update(dict(
      kind=kind,
      condition_on=RENDERED_ATTRIBUTES if conditional else (),
      latent_dim=32,
      encoder_hidden_features=256,
      decoder_dense_channels=64,
      discriminator_hidden_features=128,
      encoder_channels=(32, 64),
      decoder_channels=(64, 32),
      discriminator_channels=(16, 64, 64),
  ))
  # [ours] no augmented copies and shuffled batches with per-example flips: the CPU demo has
  # 30,000 faces and 800 steps, far from the code's 600,000 copies and 37,500 steps.
  config.data.update(dict(name='synthetic', synthetic_images=30_000, augmented_copies=0,
                          order='shuffled', flip='example'))
  config.log_every_steps = 50
  config.image_every_steps = 100
  config.eval_every_steps = 400
  config.eval_batches = 10
  config.quality.update(dict(every_steps=400, num_samples=2000))
  config.checkpoint_every_steps = 200
  return celeba64.ours(config) if preset else config      # after the kind: it reads it
