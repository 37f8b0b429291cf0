r"""Times the VAE/GAN train step at the paper's 64x64 CelebA config, on whatever backend is present.

  python benchmarks/train_step.py                          # float32 and bfloat16, batch 64/device
  python benchmarks/train_step.py --dtypes=float32 --runs=5 --steps=3
  python benchmarks/train_step.py --passes=joint           # our cheaper passes (passes.py)
  python benchmarks/train_step.py --config=synthetic       # the embedded default's step (32x32)
  python benchmarks/train_step.py --config=synthetic --dtypes=float32 --runs=1 --steps=16 \
      --variant=ema:decoder_ema_decay=0.99 --variant=sn:model.spectral_norm=True
      # [ours] options' costs beside the config's own step, as ratios in one run
  python benchmarks/train_step.py --dtypes=float32 --profile_dir=/tmp/profile
      # + two more calls traced, and each op kind's time and count per step
  python benchmarks/train_step.py --smoke                  # the tiny config, one timed step

For each compute dtype it prints the compile time, XLA's FLOP count of one step, ms per step
and images/s (median and spread over --runs runs of --steps calls, after warm-up calls), the
achieved FLOP/s, and then one JSON line holding those numbers. The images are random: the step's
cost does not depend on their content. To compare with PyTorch on the same machine in one run,
see benchmarks/compare_with_torch.sh. Each --variant is the config with some values
overridden, timed after the config itself; a table of their ms per step against the config's
ends the run. R1 runs lazily, every loss.r1_every steps in an executable of its own (as in the
loop), so time it over --steps that many, at --steps_per_dispatch=1. --smoke runs the same
code on configs/tiny.py with one untimed and one timed step, in seconds: the test suite runs it
so that the benchmark cannot rot.
"""
from __future__ import annotations

import ast
import json
import os
import statistics
import time
from typing import Any

import jax
import ml_collections
from absl import app, flags

import trace_summary   # benchmarks/, beside this script
from vaegan_jax import console
from vaegan_jax.configs import celeba64, schema, synthetic, tiny
from vaegan_jax.sharding import DEVICE_AXIS
from vaegan_jax.training import state, steps, train

_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes to time.')
_BATCH = flags.DEFINE_integer('per_device_batch', 64, 'Images per device per step.')
_RUNS = flags.DEFINE_integer('runs', 3, 'Timed runs; the median and spread are over these.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Calls per timed run (of K steps each at '
                              '--steps_per_dispatch=K).')
_WARMUP = flags.DEFINE_integer('warmup_steps', 2, 'Untimed calls first (the first touch of '
                              'fresh buffers makes the first two steps slow on the CPU).')
_CONFIG = flags.DEFINE_enum('config', 'celeba64', ['celeba64', 'synthetic'],
                            "The config timed: the paper's, or the embedded default.")
_CONFIG_ARGS = flags.DEFINE_list('config_arg', [''], "The config's arguments, each timed: "
                                 "celeba64's variants ('mar', '128'; ',mar' times the default "
                                 "and 'mar'), synthetic's model kind.")
_ENCODER_HIDDEN = flags.DEFINE_integer('encoder_hidden_features', None,
                                       'Encoder hidden width (default: the config\'s).')
_PASSES = flags.DEFINE_enum('passes', None, ['separate', 'joint'],
                            "model.passes (default: the config's, the authors' 'separate').")
_DISPATCHES = flags.DEFINE_list('steps_per_dispatch', ['1'], 'Train steps per jitted call (K), '
                                'each timed: a lax.scan over K batches; --steps counts calls.')
_VARIANTS = flags.DEFINE_multi_string(
    'variant', [], "NAME:KEY=VALUE[;KEY=VALUE...]: the config with these values, timed after "
    "it (repeat), e.g. 'sn+r1:model.spectral_norm=True;loss.r1_weight=10.0'. Values are Python "
    'literals; a string may be written bare.')
_PROFILE_DIR = flags.DEFINE_string(
    'profile_dir', None, 'Also trace --profile_calls calls after the timed runs, each timed step '
    'into a folder of its own under this one, and print where its time goes '
    '(benchmarks/trace_summary.py).')
_PROFILE_CALLS = flags.DEFINE_integer('profile_calls', 2, 'Calls traced with --profile_dir.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'configs/tiny.py, float32, one warm-up and one timed '
                           'step: checks that the benchmark runs, measures nothing.')


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
  """'NAME:KEY=VALUE;KEY=VALUE' -> (NAME, {KEY: value}); ValueError naming what is wrong."""
  name, _, assignments = text.partition(':')
  overrides = {}
  for assignment in filter(None, (part.strip() for part in assignments.split(';'))):
    key, equals, value = assignment.partition('=')
    if not equals or not key.strip():
      raise ValueError(f'--variant={text!r}: {assignment!r} is not KEY=VALUE.')
    try:
      overrides[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      overrides[key.strip()] = value.strip()          # a bare string, e.g. resize_conv
  if not name.strip() or not overrides:
    raise ValueError(f'--variant={text!r}: write NAME:KEY=VALUE[;KEY=VALUE...].')
  return name.strip(), overrides


def override(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
  """Set each dotted KEY of `overrides` in `config`; ValueError for a key the config lacks."""
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node.get(parent) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f'--variant: the config has no {key!r}.')
    node[leaf] = value


def benchmark_config(config_arg: str, dtype: str, steps_per_dispatch: int,
                     overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The config to time: celeba64 with config_arg (or tiny with --smoke), batch per device,
  with a variant's overrides."""
  module = {'celeba64': celeba64, 'synthetic': synthetic}[_CONFIG.value]
  config = tiny.get_config() if _SMOKE.value else module.get_config(config_arg or None)
  config.model.compute_dtype = dtype
  if _ENCODER_HIDDEN.value:
    config.model.encoder_hidden_features = _ENCODER_HIDDEN.value
  if _PASSES.value:
    config.model.passes = _PASSES.value
  config.global_batch_size = (2 if _SMOKE.value else _BATCH.value) * jax.local_device_count()
  config.steps_per_dispatch = steps_per_dispatch
  override(config, overrides or {})
  schema.check(config, device_count=jax.local_device_count())
  if steps.uses_r1(config) and steps_per_dispatch > 1:
    raise ValueError('The benchmark times R1 (loss.r1_weight > 0) at --steps_per_dispatch=1 '
                     'only; the training loop runs its lazy steps alone either way.')
  return config


def benchmark(config: ml_collections.ConfigDict, config_arg: str, runs: int, steps_per_run: int,
              warmup_steps: int, variant: str = '') -> dict:
  devices = jax.local_devices()
  training = state.create_training(config, DEVICE_AXIS)
  train_state = training.initial_state
  unrolled = steps.unrolls_dispatches(devices[0].platform)     # K steps per dispatch: K copies?
  train_step = steps.make_pmapped_train_step(config, training.networks, training.optimizers,
                                             devices=devices, unrolled=unrolled)
  r1_every = config.loss.r1_every if steps.uses_r1(config) else 0
  resolution, per_device = config.model.resolution, config.global_batch_size // len(devices)
  dispatch = config.steps_per_dispatch
  leading = (len(devices),) + ((dispatch,) if dispatch > 1 else ())
  batches = [jax.random.uniform(jax.random.key(i), leading + (per_device, resolution, resolution,
                                                               config.model.image_channels),
                                minval=-1.0, maxval=1.0)
             for i in range(2)]

  start = time.perf_counter()
  lowered = train_step.lower(train_state, batches[0], None)
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - start
  # The HLO before the backend's passes: on GPU the compiled module's convolutions are cuDNN
  # custom calls, which XLA's cost analysis counts as 0 FLOPs.
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # jax 0.11.2 on an H200 gave no analysis of the lowered HLO: the FLOPs are then None (the
  # count does not depend on the backend, so the CPU's stands for it).
  # K steps per dispatch are a loop, whose body the analysis counts once, or K copies of a step.
  flops_per_step = (float(cost['flops']) * len(devices) / (dispatch if unrolled else 1)
                    if cost and 'flops' in cost else None)
  # R1's lazy steps run in an executable of their own, as in the loop (train.dispatch_plan).
  step_functions = {False: compiled}
  if r1_every:
    step_functions[True] = steps.make_pmapped_train_step(
        config, training.networks, training.optimizers, devices=devices, with_r1=True).lower(
            train_state, batches[0], None).compile()

  def advance(train_state, call):
    _, with_r1 = train.dispatch_plan(call, 1, (), call + 1, r1_every)
    return step_functions[with_r1](train_state, batches[call % 2], None)

  for call in range(warmup_steps):
    train_state, metrics = advance(train_state, call)
  jax.block_until_ready(train_state)
  seconds_per_step = []
  for run in range(runs):
    start = time.perf_counter()
    for i in range(steps_per_run):
      train_state, metrics = advance(train_state, warmup_steps + run * steps_per_run + i)
    jax.block_until_ready((train_state, metrics))
    seconds_per_step.append((time.perf_counter() - start) / (steps_per_run * dispatch))

  profile = None
  if _PROFILE_DIR.value:
    first = warmup_steps + runs * steps_per_run
    folder = os.path.join(_PROFILE_DIR.value, '_'.join(
        part for part in (config_arg or 'default', config.model.compute_dtype, f'k{dispatch}',
                          variant) if part))
    try:        # a profiler that fails (no CUPTI, say) must not cost the timings above
      with jax.profiler.trace(folder):
        for call in range(first, first + _PROFILE_CALLS.value):
          train_state, metrics = advance(train_state, call)
        jax.block_until_ready((train_state, metrics))
      profile = trace_summary.summarise(
          trace_summary.load_trace(trace_summary.newest_trace(folder)),
          steps=_PROFILE_CALLS.value * dispatch)
      profile.update(dir=folder, kinds=profile['kinds'][:40])
    except Exception as error:  # pylint: disable=broad-except
      print(f'No profile of this step: {type(error).__name__}: {error}', flush=True)

  global_batch = config.global_batch_size
  median = statistics.median(seconds_per_step)
  memory = devices[0].memory_stats()          # None on the CPU
  return dict(
      dtype=config.model.compute_dtype, backend=jax.default_backend(),
      device_kind=devices[0].device_kind, devices=len(devices), batch=global_batch,
      per_device_batch=per_device, resolution=resolution,
      encoder_hidden_features=config.model.encoder_hidden_features,
      passes=config.model.passes,
      images_per_s=global_batch / median,
      images_per_s_min=global_batch / max(seconds_per_step),
      images_per_s_max=global_batch / min(seconds_per_step),
      ms_per_step=1e3 * median, ms_per_step_min=1e3 * min(seconds_per_step),
      ms_per_step_max=1e3 * max(seconds_per_step),
      flops_per_step=flops_per_step,
      achieved_flops_per_s=None if flops_per_step is None else flops_per_step / median,
      peak_memory_bytes=memory.get('peak_bytes_in_use') if memory else None,
      compile_s=compile_seconds, runs=runs, steps_per_run=steps_per_run,
      steps_per_dispatch=dispatch, config=_CONFIG.value, config_arg=config_arg,
      variant=variant, smoke=_SMOKE.value, profile=profile,
      jax=jax.__version__)


def report(result: dict) -> None:
  print(f'[{result["dtype"]}] {result["backend"]} x{result["devices"]} '
        f'({result["device_kind"]}), {result["passes"]} passes, batch {result["batch"]}: '
        f'compile {result["compile_s"]:.1f} s; '
        f'{result["ms_per_step"]:.1f} ms/step ({result["ms_per_step_min"]:.1f}-'
        f'{result["ms_per_step_max"]:.1f}); {result["images_per_s"]:.1f} images/s '
        f'({result["images_per_s_min"]:.1f}-{result["images_per_s_max"]:.1f}); ' + (
            'no FLOP count from this backend' if result['flops_per_step'] is None else
            f'{result["flops_per_step"] / 1e12:.3f} TFLOP/step, '
            f'{result["achieved_flops_per_s"] / 1e9:.1f} GFLOP/s achieved'), flush=True)
  if result['profile']:
    print(f'profile in {result["profile"]["dir"]}: '
          + trace_summary.format_summary(result['profile'], top=12), flush=True)
  print(json.dumps(result), flush=True)


def report_variants(results: list[dict]) -> None:
  """Each variant's ms per step against its config's own (the same config_arg, dtype and K)."""
  own = {(r['config_arg'], r['dtype'], r['steps_per_dispatch']): r['ms_per_step']
         for r in results if not r['variant']}
  print('variant | config_arg | dtype | K | ms/step | x the config\'s step')
  for result in results:
    base = own[result['config_arg'], result['dtype'], result['steps_per_dispatch']]
    print(f'{result["variant"] or "(the config)"} | {result["config_arg"]} | {result["dtype"]} | '
          f'{result["steps_per_dispatch"]} | {result["ms_per_step"]:.1f} | '
          f'{result["ms_per_step"] / base:.2f}', flush=True)


def main(argv: list[str]) -> None:
  del argv
  dtypes = ['float32'] if _SMOKE.value else _DTYPES.value
  timing = (1, 1, 1) if _SMOKE.value else (_RUNS.value, _STEPS.value, _WARMUP.value)
  try:
    variants = [('', {})] + [parse_variant(text) for text in _VARIANTS.value]
    for name, overrides in variants:          # every variant checked before any is timed
      benchmark_config(_CONFIG_ARGS.value[0] if _CONFIG_ARGS.value else '', dtypes[0], 1,
                       overrides)
  except (ValueError, TypeError) as error:       # schema.ConfigError is a ValueError
    raise app.UsageError(str(error)) from None
  results = []
  for config_arg in _CONFIG_ARGS.value or ['']:
    for dtype in dtypes:
      for dispatch in _DISPATCHES.value:
        for name, overrides in variants:
          config = benchmark_config(config_arg, dtype, int(dispatch), overrides)
          results.append(benchmark(config, config_arg, *timing, variant=name))
          report(results[-1])
  if len(variants) > 1:
    report_variants(results)


if __name__ == '__main__':
  console.run_main('train_step.py', main)
