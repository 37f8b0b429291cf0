r"""Times the sample-quality yardstick: feature extraction in both feature spaces, and the metrics.

  python benchmarks/quality.py                    # 1,000 images at 64x64, 10,000 for FID timing
  python benchmarks/quality.py --smoke            # a few images: checks that it runs

Prints images/s of the domain extractor (an untrained attribute predictor: the speed does not
depend on its weights) and of the FID Inception network (seeded stand-in weights of the real
shapes, so no download is needed), then the seconds of FID, KID and precision/recall on
--num_samples random features of each size, and one JSON line with every number.
"""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from vaegan_jax import console
from vaegan_jax.metrics import attribute_predictor, inception, quality

_IMAGES = flags.DEFINE_integer('images', 1000, 'Images to extract features from (timed).')
_RESOLUTION = flags.DEFINE_integer('resolution', 64, 'Image side.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 10_000, 'Points per set for the metrics.')
_SMOKE = flags.DEFINE_bool('smoke', False, '3 images at 32x32, 64 points of 16 and 32 features: '
                           'checks that it runs.')


def images_per_second(features, images: np.ndarray) -> float:
  features(images[:min(len(images), 100)])                  # compile for the batch shapes
  start = time.perf_counter()
  jax.block_until_ready(features(images))
  return len(images) / (time.perf_counter() - start)


def seconds(function) -> float:
  start = time.perf_counter()
  function()
  return time.perf_counter() - start


def main(argv: list[str]) -> None:
  del argv
  # The smoke's 3 images at 32x32 are the Inception test's shapes: one compile serves both.
  count, resolution, points = ((3, 32, 64) if _SMOKE.value else
                               (_IMAGES.value, _RESOLUTION.value, _NUM_SAMPLES.value))
  images = np.random.default_rng(0).uniform(-1, 1, (count, resolution, resolution, 3)
                                            ).astype(np.float32)
  model = attribute_predictor.AttributeCNN(40)
  domain = attribute_predictor.Predictor(
      attribute_names=tuple(f'a{i}' for i in range(40)), trained=np.ones(40, bool),
      params=model.init(jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)))['params'],
      image_shape=(resolution, resolution, 3))
  shapes = jax.eval_shape(lambda: inception.FIDInceptionV3().init(
      jax.random.key(0), jnp.zeros((1, 299, 299, 3))))['params']
  leaves, tree = jax.tree.flatten(shapes)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [0.05 * jax.random.normal(key, leaf.shape)
                                     for key, leaf in zip(keys, leaves)])
  result = dict(backend=jax.default_backend(), device_kind=jax.devices()[0].device_kind,
                images=count, resolution=resolution, smoke=_SMOKE.value,
                domain_images_per_s=images_per_second(domain.hidden_features, images),
                inception_images_per_s=images_per_second(
                    lambda batch: inception.features(params, batch), images))
  rng = np.random.default_rng(2)
  # The feature sizes of the two spaces; the smoke's are small (FID's square root of a
  # 2048 x 2048 matrix alone takes 15 s on 2 cores).
  dims = dict(domain=16, inception=32) if _SMOKE.value else dict(domain=256, inception=2048)
  result['feature_dims'] = dims
  for name, dim in dims.items():
    real, generated = rng.normal(size=(points, dim)), rng.normal(size=(points, dim)) + 0.1
    result[f'{name}_fid_s'] = seconds(lambda: quality.fid(quality.statistics_of(real),
                                                          quality.statistics_of(generated)))
    result[f'{name}_kid_s'] = seconds(lambda: quality.kid(real, generated, subsets=20,
                                                          subset_size=min(points, 1000)))
    result[f'{name}_precision_recall_s'] = seconds(
        lambda: quality.precision_recall(real, generated))
  result['points'] = points
  print(f'feature extraction on {result["backend"]}: domain {result["domain_images_per_s"]:.0f} '
        f'images/s, Inception {result["inception_images_per_s"]:.1f} images/s ({count} images at '
        f'{resolution}x{resolution}); metrics on {points} points: ' + ', '.join(
            f'{name} {result[name]:.2f} s' for name in result if name.endswith('_s')
            and not name.endswith('per_s')))
  print(json.dumps(result))


if __name__ == '__main__':
  console.run_main('quality.py', main)
