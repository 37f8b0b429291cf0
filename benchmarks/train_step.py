r"""Times the VAE/GAN train step at the paper's 64x64 CelebA config, on whatever backend is present.

  python benchmarks/train_step.py                          # float32 and bfloat16, batch 64/device
  python benchmarks/train_step.py --dtypes=float32 --runs=5 --steps=3

For each compute dtype it prints the compile time, XLA's FLOP count of one step, ms per step
and images/s (median and spread over --runs runs of --steps steps, after warm-up steps), the
achieved FLOP/s, and then one JSON line holding those numbers. The images are random: the step's
cost does not depend on their content. To compare with PyTorch on the same machine in one run,
see benchmarks/compare_with_torch.sh.
"""
from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from vaegan_jax import models, state, steps
from vaegan_jax.configs import celeba64

_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes to time.')
_BATCH = flags.DEFINE_integer('per_device_batch', 64, 'Images per device per step.')
_RUNS = flags.DEFINE_integer('runs', 3, 'Timed runs; the median and spread are over these.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Steps per timed run.')
_WARMUP = flags.DEFINE_integer('warmup_steps', 2, 'Untimed steps first (the first touch of '
                              'fresh buffers makes the first two steps slow on the CPU).')
_CONFIG_ARG = flags.DEFINE_string('config_arg', '', "celeba64 variants, e.g. 'mar' or '128'.")
_ENCODER_HIDDEN = flags.DEFINE_integer('encoder_hidden_features', 2048,
                                       'Encoder hidden width: 2048 (paper) or 1024 (code).')


def benchmark(dtype: str) -> dict:
  config = celeba64.get_config(_CONFIG_ARG.value or None)
  config.model.compute_dtype = dtype
  config.model.encoder_hidden_features = _ENCODER_HIDDEN.value
  devices = jax.local_devices()
  config.global_batch_size = _BATCH.value * len(devices)
  networks = models.build_networks(config, steps.AXIS_NAME)
  optimizers = state.build_optimizers(config, networks)
  train_state = state.init_train_state(config, networks, optimizers)
  train_step = steps.make_pmapped_train_step(config, networks, optimizers)
  resolution = config.model.resolution
  batches = [jax.random.uniform(jax.random.key(i), (len(devices), _BATCH.value, resolution,
                                                    resolution, 3), minval=-1.0, maxval=1.0)
             for i in range(2)]

  start = time.perf_counter()
  compiled = train_step.lower(train_state, batches[0]).compile()
  compile_seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops_per_step = float(cost.get('flops', float('nan'))) * len(devices)

  for i in range(_WARMUP.value):
    train_state, metrics = train_step(train_state, batches[i % 2])
  jax.block_until_ready((train_state, metrics))
  seconds_per_step = []
  for _ in range(_RUNS.value):
    start = time.perf_counter()
    for i in range(_STEPS.value):
      train_state, metrics = train_step(train_state, batches[i % 2])
    jax.block_until_ready((train_state, metrics))
    seconds_per_step.append((time.perf_counter() - start) / _STEPS.value)

  global_batch = config.global_batch_size
  median = statistics.median(seconds_per_step)
  result = dict(
      dtype=dtype, backend=jax.default_backend(), device_kind=devices[0].device_kind,
      devices=len(devices), batch=global_batch, per_device_batch=_BATCH.value,
      resolution=resolution, encoder_hidden_features=_ENCODER_HIDDEN.value,
      images_per_s=global_batch / median,
      images_per_s_min=global_batch / max(seconds_per_step),
      images_per_s_max=global_batch / min(seconds_per_step),
      ms_per_step=1e3 * median, ms_per_step_min=1e3 * min(seconds_per_step),
      ms_per_step_max=1e3 * max(seconds_per_step),
      flops_per_step=flops_per_step, achieved_flops_per_s=flops_per_step / median,
      compile_s=compile_seconds, runs=_RUNS.value, steps_per_run=_STEPS.value,
      config_arg=_CONFIG_ARG.value,
      jax=jax.__version__)
  print(f'[{dtype}] {result["backend"]} x{len(devices)} ({result["device_kind"]}), '
        f'batch {global_batch}: compile {compile_seconds:.1f} s; '
        f'{result["ms_per_step"]:.0f} ms/step ({result["ms_per_step_min"]:.0f}-'
        f'{result["ms_per_step_max"]:.0f}); {result["images_per_s"]:.2f} images/s '
        f'({result["images_per_s_min"]:.2f}-{result["images_per_s_max"]:.2f}); '
        f'{flops_per_step / 1e12:.3f} TFLOP/step, '
        f'{result["achieved_flops_per_s"] / 1e9:.1f} GFLOP/s achieved', flush=True)
  print(json.dumps(result), flush=True)
  return result


def main(argv: list[str]) -> None:
  del argv
  for dtype in _DTYPES.value:
    jnp.dtype(dtype)   # fails early on a typo
    benchmark(dtype)


if __name__ == '__main__':
  app.run(main)
