r"""VAE/GAN on CelebA at 64x64, with the constants of the authors' February 2016 code.

Each value's comment says where it comes from: [paper] the ICML paper, [code] the authors'
repository at commit 1906387 (Feb 2016), [Mar] commit 24aa0f2, [ours] a choice of this project.

  vaegan-train --config=vaegan_jax/configs/celeba64.py --workdir=runs/celeba64 \
      --config.data.raw_dir=~/celeba          # prepares CelebA's raw files on first use

Time: 37,500 steps of batch 64; about 4 images/s on a 2-core CPU (benchmarks/train_step.py), so
a GPU or TPU is needed; GPU and TPU times are not measured yet.

The config argument picks variants, comma-separated (`--config=vaegan_jax/configs/celeba64.py:mar,128`):
  mar          the March 2016 code's constants (gamma 1e-6, prior fakes only, 0.5/0.5 weights)
  conditional  condition the three networks on CelebA's 40 attributes (models.py says where y enters)
  32 | 128     the resolution: one stride-2 stage fewer or more than the 64x64 table
"""
from __future__ import annotations

import ml_collections

from vaegan_jax.celeba import ATTRIBUTE_NAMES as CELEBA_ATTRIBUTE_NAMES

# Channel widths per resolution. 64 is the paper's table; 32 removes and 128 adds the stride-2
# stage next to the image, the added one half as wide as its neighbour. [paper] for 64, [ours] else.
ARCHITECTURES = {
    32: dict(encoder_channels=(128, 256), decoder_channels=(256, 128),
             discriminator_channels=(32, 256, 256)),
    64: dict(encoder_channels=(64, 128, 256), decoder_channels=(256, 128, 32),
             discriminator_channels=(32, 128, 256, 256)),
    128: dict(encoder_channels=(32, 64, 128, 256), decoder_channels=(256, 128, 32, 16),
              discriminator_channels=(32, 64, 128, 256, 256)),
}


def optimizer_config(learning_rate: float = 3e-4) -> ml_collections.ConfigDict:
  """One network's optimizer: RMSProp with coupled weight decay on kernels."""
  return ml_collections.ConfigDict(dict(
      name='rmsprop',                  # [paper] RMSProp
      learning_rate=learning_rate,     # [paper] 3e-4; [code] 0.02 / 64 at epoch 0
      decay=0.9,                       # [code] ms = 0.9 ms + 0.1 g^2
      eps=1e-8,                        # [code] added outside the square root
      weight_decay=1e-5,               # [code] coupled, conv and dense kernels only
      schedule='constant',             # [paper] constant; 'anneal' is the code's schedule
      end_learning_rate=1e-5 / 64,     # [code] lr at the last epoch when schedule='anneal'
      anneal_power=0.75,               # [code] lr0 - (epoch / epochs)^0.75 * (lr0 - lr_end)
      anneal_epochs=150,               # [code] epochs the anneal spans
      steps_per_epoch=250,             # [code] 250 batches an epoch
  ))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The paper's CelebA 64x64 run; `arg` as in the module docstring."""
  variants = [v.strip() for v in (arg or '').split(',') if v.strip()]
  unknown = [v for v in variants if v not in ('mar', 'conditional', '32', '64', '128')]
  if unknown:
    raise ValueError(f'Unknown celeba64 config variant(s) {unknown}; choose from mar, '
                     f'conditional, 32, 64, 128.')
  resolution = next((int(v) for v in variants if v.isdigit()), 64)
  march = 'mar' in variants

  config = ml_collections.ConfigDict()
  config.seed = 0                          # [ours] seeds init, noise and data order
  config.global_batch_size = 64            # [paper] 64, split over all devices
  config.num_train_steps = (250 if march else 150) * 250  # [code] epochs x 250 batches

  config.model = ml_collections.ConfigDict(dict(
      kind='vaegan',                       # vaegan | vae | vae_disl | gan (the paper's four)
      resolution=resolution,               # [paper] 64
      image_channels=3,                    # [paper] RGB
      latent_dim=128,                      # [paper] 128
      encoder_hidden_features=2048,        # [paper] 2048; [code] 1024
      decoder_dense_channels=256,          # [paper] dense to 8 x 8 x 256
      discriminator_hidden_features=512,   # [paper] 512
      compute_dtype='float32',             # [ours] 'bfloat16' computes in bf16, params stay f32
      conv_gradients='auto',               # [ours] 'matmul' on CPU, 'xla' on GPU/TPU (layers.py)
      # [paper] the conditional models take attributes y; which ones is [ours]: () unconditional
      condition_on=CELEBA_ATTRIBUTE_NAMES if 'conditional' in variants else (),
      **ARCHITECTURES[resolution],
  ))

  config.loss = ml_collections.ConfigDict(dict(
      # [paper] Dis_l = the last conv (the 4th at 64x64: 8x8x256), before its BN and ReLU
      feature_layer=f"conv{len(ARCHITECTURES[resolution]['discriminator_channels'])}",
      reduction='sum',                     # [code] every term summed over the batch; 'mean' averages
      gamma=1e-6 if march else 1e-5,       # [code] decoder's weight of L_llike vs the GAN term
      gan_form='logit',                    # [ours] exact log-sigmoid; 'eps' is the code's form
      gan_eps=1e-3,                        # [code] log(D + 1e-3) in the 'eps' form
      decoder_gan='saturating',            # [code] saturating (gradient reversal); or non_saturating
      fakes='prior' if march else 'prior_and_reconstruction',  # [code] Feb both, [Mar] prior only
      real_weight=0.5 if march else 0.66,  # [code] scales the discriminator's real term
      fake_weight=0.5 if march else 0.17,  # [code] scales each fake term of the discriminator
      gating=True,                         # [code] equilibrium gating (not in the paper)
      equilibrium=0.68,                    # [code] target mean BCE of real and of fake
      margin=0.35,                         # [code] skip Dis below 0.33, skip Dec above 1.03
  ))

  config.optimizer = ml_collections.ConfigDict(dict(
      encoder=optimizer_config(),
      decoder=optimizer_config(),
      discriminator=optimizer_config(),
  ))
  if march:
    for network in ('encoder', 'decoder', 'discriminator'):
      config.optimizer[network].anneal_epochs = 250  # [Mar] 250 epochs

  config.data = ml_collections.ConfigDict(dict(
      name='celeba',                       # [ours] the prepared dataset (vaegan-prepare --name)
      data_dir='~/tensorflow_datasets',    # [ours] where it is prepared (tfds's default place)
      raw_dir='',                          # [ours] CelebA's raw files: prepared on first use if set
      synthetic_images=0,                  # [ours] > 0: generate synthetic CelebA on first use
      train_split='train+validation',      # [paper] train on train + validation
      eval_split='test',                   # [paper] test on the test partition
      flip='batch',                        # [code] whole batches, p = 0.5; 'example' | 'none'
      reader_threads=2,                    # [ours] grain threads reading batches ahead
  ))

  config.log_every_steps = 50              # [ours] metrics to the console, metrics.jsonl, TB
  config.image_every_steps = 1000          # [ours] sample and reconstruction grids
  config.eval_every_steps = 2500           # [ours] test-split metrics (and at the end)
  config.eval_batches = 20                 # [ours] test batches per evaluation (0: all)
  config.checkpoint_every_steps = 2500     # [ours] also on SIGTERM and at the end
  config.keep_checkpoints = 3              # [ours] the last K are kept
  config.grid_size = 8                     # [ours] grids of grid_size x grid_size images
  return config
