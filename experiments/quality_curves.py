r"""The long-run check of the paper's claim on the synthetic faces: VAE against VAE/GAN, trained
until their sample FID (in the domain feature space) stops falling, with both curves.

  python experiments/quality_curves.py --out=curves                       # 4,000 steps each
  python experiments/quality_curves.py --out=curves --steps=8000 --every=500
  python experiments/quality_curves.py --out=curves --steps=16000 --train=VAE  # VAE alone, further
  python experiments/quality_curves.py --out=/tmp/curves --smoke   # the tiny config, 4 steps

Trains configs/synthetic.py:vae and :vaegan for --steps steps (resuming when repeated), measuring
FID, KID, precision and recall of 2,000 samples and reconstructions every --every steps. Writes
curves.json (every measurement of both runs; the step after which each sample FID never fell
by more than 2% again, if that is before the run's last quarter; and how much lower the last
quarter's mean sample FID is than the third quarter's) and curves.png (sample FID against
step). --train names the models to train; the others' runs in --out are read as they are (an
empty --train only redraws). Nothing is tuned: the configs are the demo's. --smoke runs the
tiny config (16x16, 4 steps, measured at steps 2 and 4 on 32 images), as a test does.
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging
from PIL import Image

from vaegan_jax import console, folders
from vaegan_jax.analysis import plots
from vaegan_jax.configs import synthetic, tiny
from vaegan_jax.training import metric_writers, train

_OUT = flags.DEFINE_string('out', 'curves', 'Folder for the runs, curves.json and curves.png.')
_STEPS = flags.DEFINE_integer('steps', 4000, 'Training steps of each model.')
_EVERY = flags.DEFINE_integer('every', 250, 'Steps between quality measurements.')
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'Prepared datasets.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'The tiny config for 4 steps: a check that it runs.')
MODELS = {'VAE': 'vae', 'VAE/GAN': 'vaegan'}
_TRAIN = flags.DEFINE_list('train', list(MODELS), 'The models to train (further) to --steps; '
                           'the others are read from their runs in --out as they are.')


def quality_curve(workdir: str) -> list[dict]:
  """The 'quality' lines of a run's metrics.jsonl, in step order (the last one per step)."""
  by_step = {record['step']: record for record in metric_writers.read_records(
      os.path.join(workdir, 'metrics.jsonl')) if record['kind'] == 'quality'}
  return [by_step[step] for step in sorted(by_step)]


def plateau_step(steps: list[int], values: list[float], tolerance: float = 0.02) -> int | None:
  """The first measured step after which the value never falls by more than `tolerance` of
  itself again, if that is before the last quarter of the run; None while it still falls."""
  for index, step in enumerate(steps):
    later = values[index:]
    if min(later) >= values[index] * (1 - tolerance):
      return step if step <= steps[-1] * 0.75 else None
  return None


def last_quarter_fall(steps: list[int], values: list[float]) -> float | None:
  """How much lower the mean of the last quarter's measurements is than the third quarter's, as
  a fraction of the latter (None if a quarter holds none): a plateau test that one noisy dip
  does not decide."""
  last = steps[-1]
  third, fourth = ([value for step, value in zip(steps, values) if low < step <= high]
                   for low, high in ((last * 0.5, last * 0.75), (last * 0.75, last)))
  if not third or not fourth:
    return None
  return 1 - (sum(fourth) / len(fourth)) / (sum(third) / len(third))


def curve_config(kind: str):
  """The demo's config of `kind` (the tiny one with --smoke), measured every --every steps."""
  if _SMOKE.value:
    config = tiny.get_config(kind)
    config.num_train_steps, every = 4, 2
    config.quality.update(extractor='domain', num_samples=32, extractor_steps=30)
  else:
    config = synthetic.get_config(kind)
    config.num_train_steps, every = _STEPS.value, _EVERY.value
    config.eval_every_steps = config.image_every_steps = config.checkpoint_every_steps = 1000
  config.data.data_dir = _DATA_DIR.value
  config.quality.every_steps = every
  return config


def main(argv: list[str]) -> None:
  del argv
  out = os.path.expanduser(_OUT.value)
  if unknown := set(_TRAIN.value) - set(MODELS):
    raise app.UsageError(f'--train={",".join(_TRAIN.value)}: no model {sorted(unknown)}; '
                         f'choose from {", ".join(MODELS)}.')
  results = {}
  for label, kind in MODELS.items():
    workdir = os.path.join(out, 'runs', kind)
    if label in _TRAIN.value:
      config = curve_config(kind)
      logging.info('Training %s in %s for %d steps.', label, workdir, config.num_train_steps)
      train.train_and_evaluate(config, workdir)
    elif not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
      raise app.UsageError(f'No run of {label} in {workdir} to read: train it (--train={label}).')
    curve = quality_curve(workdir)
    steps = [record['step'] for record in curve]
    fid = [record['fid_domain_samples'] for record in curve]
    results[label] = {'workdir': workdir, 'steps': steps, 'measurements': curve,
                      'sample_fid_stopped_falling_at': plateau_step(steps, fid),
                      'sample_fid_last_quarter_fall': last_quarter_fall(steps, fid)}
  written = folders.Folder(out, 'the output folder', '--out').make()
  written.write_atomically('curves.json', lambda file: file.write(
      json.dumps(results, indent=2).encode()))
  chart = plots.line_chart(
      {label: (result['steps'], [record['fid_domain_samples'] for record in
                                 result['measurements']]) for label, result in results.items()},
      'Sample FID (domain features; lower is better) by step')
  written.write_atomically('curves.png', lambda file: Image.fromarray(chart).save(
      file, format='PNG'))
  print(json.dumps({label: {'last_step': result['steps'][-1],
                            'last_sample_fid': result['measurements'][-1]['fid_domain_samples'],
                            'stopped_falling_at': result['sample_fid_stopped_falling_at'],
                            'last_quarter_fall': result['sample_fid_last_quarter_fall']}
                    for label, result in results.items()}))


if __name__ == '__main__':
  console.run_main('quality_curves.py', main)
