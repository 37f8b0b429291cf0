r"""Would one call per network beat the authors' separate applications? The bound, timed.

  .venv/bin/python benchmarks/batched_applications.py             # celeba64's networks
  .venv/bin/python benchmarks/batched_applications.py --smoke     # tiny networks, one repeat

The authors' passes (training/passes.py) apply the decoder twice per step and the discriminator
twice, each application normalising over its own images. Batching a network's applications into
one call (batch norm per group: a reshape) keeps those numbers, and pays only if one large call
is faster than the small ones. This times that bound, per network, forward and backward (the
gradients the step takes: the decoder's and the GAN pass's with respect to parameters and
inputs, the feature pass's with respect to its inputs alone), with plain batch norm over the
whole call. One call cannot give the feature pass no parameter gradient, so the batched
discriminator also pays the parameter gradient of the feature pass's images.

Per pass style it prints the best of --repeats times in ms, separate and batched, and their
ratio (above 1: batching would pay), then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from vaegan_jax.configs import celeba64, tiny
from vaegan_jax.model.models import build_networks

# Images per application in units of the batch B: decoder (reconstruction pass, fakes),
# discriminator (feature pass, GAN pass), as passes.py's docstring lists them.
APPLICATIONS = {'feb': dict(decoder=(1, 2), discriminator=(2, 3)),
                'mar': dict(decoder=(1, 1), discriminator=(2, 2))}


def best_ms(function, *args, repeats: int) -> float:
  jax.block_until_ready(function(*args))         # compile, first touch
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * min(times)


def gradient_functions(module, example: jax.Array, head):
  """(params, jitted grad over (params, inputs), jitted grad over inputs) of sum(head(out)^2),
  one application in train mode."""
  variables = module.init(jax.random.key(0), example, train=True)

  def objective(params, inputs):
    outputs, _ = module.apply({'params': params, 'batch_stats': variables['batch_stats']},
                              inputs, train=True, mutable=['batch_stats'])
    return jnp.sum(jnp.square(head(outputs).astype(jnp.float32)))

  return (variables['params'], jax.jit(jax.grad(objective, argnums=(0, 1))),
          jax.jit(jax.grad(objective, argnums=1)))


def time_style(config, style: str, batch: int, repeats: int) -> dict:
  networks = build_networks(config)
  resolution, channels = config.model.resolution, config.model.image_channels
  latents = lambda n: jax.random.normal(jax.random.key(n), (n, config.model.latent_dim))
  images = lambda n: jax.random.uniform(jax.random.key(n), (n, resolution, resolution, channels),
                                        minval=-1.0, maxval=1.0)
  reconstruction, fakes = APPLICATIONS[style]['decoder']
  params, both, _ = gradient_functions(networks.decoder, latents(2), lambda out: out)
  decoder_separate = (best_ms(both, params, latents(reconstruction * batch), repeats=repeats)
                      + best_ms(both, params, latents(fakes * batch), repeats=repeats))
  decoder_batched = best_ms(both, params, latents((reconstruction + fakes) * batch),
                            repeats=repeats)

  feature_pass, gan_pass = APPLICATIONS[style]['discriminator']
  feature_layer = config.loss.feature_layer
  params, both, _ = gradient_functions(networks.discriminator, images(2), lambda out: out[0])
  _, _, inputs_only = gradient_functions(networks.discriminator, images(2),
                                         lambda out: out[1][feature_layer])
  discriminator_separate = (
      best_ms(inputs_only, params, images(feature_pass * batch), repeats=repeats)
      + best_ms(both, params, images(gan_pass * batch), repeats=repeats))
  discriminator_batched = best_ms(both, params, images((feature_pass + gan_pass) * batch),
                                  repeats=repeats)
  return dict(style=style, decoder_separate_ms=decoder_separate,
              decoder_batched_ms=decoder_batched,
              decoder_ratio=decoder_separate / decoder_batched,
              discriminator_separate_ms=discriminator_separate,
              discriminator_batched_ms=discriminator_batched,
              discriminator_ratio=discriminator_separate / discriminator_batched)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--styles', default='feb,mar')
  parser.add_argument('--smoke', action='store_true', help='tiny networks, one repeat')
  args = parser.parse_args()
  config = tiny.get_config() if args.smoke else celeba64.get_config()
  batch, repeats = (2, 1) if args.smoke else (args.batch, args.repeats)
  results = []
  for style in args.styles.split(','):
    row = time_style(config, style, batch, repeats)
    results.append(row)
    for network in ('decoder', 'discriminator'):
      print(f'{style} {network:13s} separate {row[f"{network}_separate_ms"]:8.1f} ms  '
            f'batched {row[f"{network}_batched_ms"]:8.1f} ms  '
            f'ratio {row[f"{network}_ratio"]:.3f}', flush=True)
  print(json.dumps({'backend': jax.default_backend(), 'batch': batch, 'smoke': args.smoke,
                    'jax': jax.__version__, 'styles': results}))


if __name__ == '__main__':
  main()
