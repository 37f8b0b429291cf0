r"""Times the input side: preparing synthetic CelebA, and the training input reading it back.

  python benchmarks/input_pipeline.py                         # 30,000 images at 64x64
  python benchmarks/input_pipeline.py --num_images=5000 --batches=200
  python benchmarks/input_pipeline.py --smoke                 # 200 images, a few batches

1. Writes --num_images synthetic faces in CelebA's raw format (vaegan_jax.data.synthetic_celeba) and prepares
   them (vaegan_jax.data.prepare, all cores): prints images/s of each.
2. Reads the prepared train split with the training input (shuffled global batches of
   --global_batch_size, per-example flips, grain's reader threads) and prints images/s over
   --batches batches after --warmup_batches, median of --runs runs: as host batches (what feeds
   an accelerator), and as model input on the local devices (flip and scaling run there; on a
   CPU-only machine that work shares the same cores). Then one JSON line with every number.

--smoke runs the same code on 200 images at 16x16 with a few batches, in seconds: the test suite
runs it so that the benchmark cannot rot.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time

import dataclasses

import jax
from absl import flags

from vaegan_jax import console
from vaegan_jax.data import input_pipeline, prepare, preprocess, sources, synthetic_celeba

_NUM_IMAGES = flags.DEFINE_integer('num_images', 30_000, 'Synthetic images to write and prepare.')
_RESOLUTION = flags.DEFINE_integer('resolution', 64, 'Prepared resolution.')
_BATCH = flags.DEFINE_integer('global_batch_size', 64, 'Images per global batch.')
_BATCHES = flags.DEFINE_integer('batches', 1000, 'Timed batches per run.')
_WARMUP = flags.DEFINE_integer('warmup_batches', 20, 'Untimed batches first.')
_RUNS = flags.DEFINE_integer('runs', 3, 'Timed runs.')
_THREADS = flags.DEFINE_integer('threads', 2, "grain's reader threads.")
_WORKERS = flags.DEFINE_integer('workers', 0, 'Prepare processes (0: one per core).')
_SMOKE = flags.DEFINE_bool('smoke', False, '200 images at 16x16, batch 16, 5 batches, 1 run: '
                           'checks that the benchmark runs, measures nothing.')


@dataclasses.dataclass(frozen=True)
class Settings:
  num_images: int
  resolution: int
  global_batch_size: int
  batches: int
  warmup_batches: int
  runs: int


def settings() -> Settings:
  if _SMOKE.value:
    return Settings(num_images=200, resolution=16, global_batch_size=16, batches=5,
                    warmup_batches=1, runs=1)
  return Settings(_NUM_IMAGES.value, _RESOLUTION.value, _BATCH.value, _BATCHES.value,
                  _WARMUP.value, _RUNS.value)


def time_reading(split: input_pipeline.PreparedSplit, on_devices: bool, setup: Settings
                 ) -> list[float]:
  """images/s of each run: batches pulled from a fresh iterator, as host arrays or (on_devices)
  until the last is model input on the devices."""
  devices = jax.local_devices()
  rates = []
  for run in range(setup.runs):
    load = input_pipeline.training_batches(
        split, seed=run, global_batch_size=setup.global_batch_size, local_devices=len(devices),
        flip='example')
    iterator = input_pipeline.TrainingIterator(load, devices if on_devices else None,
                                               threads=_THREADS.value)
    for _ in range(setup.warmup_batches):
      next(iterator)
    start = time.perf_counter()
    for _ in range(setup.batches):
      batch = next(iterator)
    jax.block_until_ready(batch)
    rates.append(setup.batches * setup.global_batch_size / (time.perf_counter() - start))
  return rates


def main(argv: list[str]) -> None:
  del argv
  setup = settings()
  with tempfile.TemporaryDirectory() as scratch:
    start = time.perf_counter()
    synthetic_celeba.write_celeba(f'{scratch}/raw', setup.num_images, seed=0)
    synthetic_rate = setup.num_images / (time.perf_counter() - start)
    summary = prepare.prepare(
        sources.CelebAFiles(f'{scratch}/raw', name='synthetic'), f'{scratch}/data',
        preprocess.PreprocessSpec(resolution=setup.resolution), workers=_WORKERS.value)
    split = input_pipeline.open_prepared(f'{scratch}/data', 'synthetic', setup.resolution, 3,
                                         'train+validation')
    host_rates = time_reading(split, on_devices=False, setup=setup)
    device_rates = time_reading(split, on_devices=True, setup=setup)
  result = dict(
      num_images=setup.num_images, resolution=setup.resolution,
      synthetic_images_per_s=round(synthetic_rate),
      prepare_images_per_s=round(setup.num_images / summary.seconds),
      prepared_mib=round(summary.bytes / 2**20, 1),
      host_images_per_s_median=round(statistics.median(host_rates)),
      host_images_per_s_runs=[round(rate) for rate in host_rates],
      device_images_per_s_median=round(statistics.median(device_rates)),
      device_images_per_s_runs=[round(rate) for rate in device_rates],
      global_batch_size=setup.global_batch_size, devices=jax.local_device_count(),
      backend=jax.default_backend(), smoke=_SMOKE.value)
  print(f'synthetic: {result["synthetic_images_per_s"]} images/s; prepare: '
        f'{result["prepare_images_per_s"]} images/s ({summary}); training input: '
        f'{result["host_images_per_s_median"]} images/s as host batches, '
        f'{result["device_images_per_s_median"]} images/s as model input on '
        f'{jax.default_backend()} (medians of {setup.runs} runs)')
  print(json.dumps(result))


if __name__ == '__main__':
  console.run_main('input_pipeline.py', main)
