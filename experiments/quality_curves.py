r"""The long-run check of the paper's claim on the synthetic faces: VAE against VAE/GAN, trained
until their sample FID (in the domain feature space) stops falling, with both curves.

  python experiments/quality_curves.py --out=curves                       # 4,000 steps each
  python experiments/quality_curves.py --out=curves --steps=8000 --every=500

Trains configs/synthetic.py:vae and :vaegan for --steps steps (resuming when repeated), measuring
FID, KID, precision and recall of 2,000 samples and reconstructions every --every steps. Writes
curves.json (every measurement of both runs, and the steps after which each sample FID stopped
falling by more than 2% over the last quarter of the run) and curves.png (sample FID against
step). Nothing is tuned: the configs are the demo's.
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags, logging
from PIL import Image, ImageDraw, ImageFont

from vaegan_jax import metric_writers, train
from vaegan_jax.configs import synthetic

_OUT = flags.DEFINE_string('out', 'curves', 'Folder for the runs, curves.json and curves.png.')
_STEPS = flags.DEFINE_integer('steps', 4000, 'Training steps of each model.')
_EVERY = flags.DEFINE_integer('every', 250, 'Steps between quality measurements.')
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'Prepared datasets.')
MODELS = {'VAE': 'vae', 'VAE/GAN': 'vaegan'}
COLOURS = {'VAE': (200, 60, 60), 'VAE/GAN': (40, 90, 180)}


def quality_curve(workdir: str) -> list[dict]:
  """The 'quality' lines of a run's metrics.jsonl, in step order (the last one per step)."""
  by_step = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as file:
    for line in file:
      record = json.loads(line)
      if record['kind'] == 'quality':
        by_step[record['step']] = record
  return [by_step[step] for step in sorted(by_step)]


def plateau_step(steps: list[int], values: list[float], tolerance: float = 0.02) -> int | None:
  """The first measured step after which the value never falls by more than `tolerance` of
  itself again, if that is before the last quarter of the run; None while it still falls."""
  for index, step in enumerate(steps):
    later = values[index:]
    if min(later) >= values[index] * (1 - tolerance):
      return step if step <= steps[-1] * 0.75 else None
  return None


def line_chart(curves: dict[str, tuple[list[int], list[float]]], title: str) -> np.ndarray:
  """A small line chart [H, W, 3] uint8 of each curve against step, with a legend."""
  width, height, left, top, bottom = 640, 360, 60, 30, 40
  canvas = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  all_steps = [step for steps, _ in curves.values() for step in steps]
  all_values = [value for _, values in curves.values() for value in values]
  low, high = min(all_values), max(all_values)
  x = lambda step: left + (step / max(all_steps)) * (width - left - 20)
  y = lambda value: top + (high - value) / max(high - low, 1e-9) * (height - top - bottom)
  draw.text((left, 8), title, fill='black', font=font)
  draw.line([(left, top), (left, height - bottom), (width - 20, height - bottom)], fill='black')
  for value in (low, (low + high) / 2, high):
    draw.text((4, y(value) - 6), f'{value:.0f}', fill='black', font=font)
  for step in (0, max(all_steps) // 2, max(all_steps)):
    draw.text((x(step) - 10, height - bottom + 6), str(step), fill='black', font=font)
  for index, (label, (steps, values)) in enumerate(curves.items()):
    draw.line([(x(s), y(v)) for s, v in zip(steps, values)], fill=COLOURS[label], width=2)
    draw.text((width - 120, top + 14 * index), label, fill=COLOURS[label], font=font)
  return np.asarray(canvas)


def main(argv: list[str]) -> None:
  del argv
  metric_writers.quiet_library_logs()
  out = os.path.expanduser(_OUT.value)
  results = {}
  for label, kind in MODELS.items():
    config = synthetic.get_config(kind)
    config.data.data_dir = _DATA_DIR.value
    config.num_train_steps = _STEPS.value
    config.quality.every_steps = _EVERY.value
    config.eval_every_steps = config.image_every_steps = config.checkpoint_every_steps = 1000
    workdir = os.path.join(out, 'runs', kind)
    logging.info('Training %s in %s for %d steps.', label, workdir, _STEPS.value)
    train.train_and_evaluate(config, workdir)
    curve = quality_curve(workdir)
    steps = [record['step'] for record in curve]
    fid = [record['fid_domain_samples'] for record in curve]
    results[label] = {'workdir': workdir, 'steps': steps, 'measurements': curve,
                      'sample_fid_stopped_falling_at': plateau_step(steps, fid)}
  with open(os.path.join(out, 'curves.json'), 'w') as file:
    json.dump(results, file, indent=2)
  chart = line_chart({label: (result['steps'], [record['fid_domain_samples'] for record in
                                                 result['measurements']])
                      for label, result in results.items()},
                     'Sample FID (domain features, 2,000 samples; lower is better) by step')
  Image.fromarray(chart).save(os.path.join(out, 'curves.png'))
  print(json.dumps({label: {'last_step': result['steps'][-1],
                            'last_sample_fid': result['measurements'][-1]['fid_domain_samples'],
                            'stopped_falling_at': result['sample_fid_stopped_falling_at']}
                    for label, result in results.items()}))


if __name__ == '__main__':
  app.run(main)
