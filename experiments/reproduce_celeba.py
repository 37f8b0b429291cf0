r"""The reproduction driver: train the paper's four models, the attribute predictor, then every
figure, and an index page that shows them.

  python experiments/reproduce_celeba.py --out=reproduction                   # synthetic, CPU
  python experiments/reproduce_celeba.py --out=reproduction --dataset=celeba \
      --raw_dir=~/celeba                                                       # the paper's run

--dataset=synthetic trains configs/synthetic.py (32x32, 800 steps each) for VAE, VAE_Dis_l, GAN
and VAE/GAN on the embedded synthetic faces; --dataset=celeba trains configs/celeba64.py (the
paper's Feb 2016 constants) on CelebA, which needs a GPU or TPU. --steps overrides the number of
steps of every model (a quick check: --steps=20). Runs go to OUT/runs/KIND and resume when the
command is repeated; figures and their JSON go to OUT/figures; OUT/index.md shows them.
Attribute-conditioned generation and its similarity table are not part of it yet.
"""
from __future__ import annotations

import json
import os

import ml_collections
from absl import app, flags, logging

from vaegan_jax import (attribute_predictor, figures, input_pipeline, metric_writers,
                        train)
from vaegan_jax.configs import celeba64, synthetic

_OUT = flags.DEFINE_string('out', 'reproduction', 'Folder for runs, figures and index.md.')
_DATASET = flags.DEFINE_enum('dataset', 'synthetic', ['synthetic', 'celeba'], 'Which data.')
_RAW_DIR = flags.DEFINE_string('raw_dir', '', "celeba: CelebA's raw files (prepared once).")
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'Prepared datasets.')
_STEPS = flags.DEFINE_integer('steps', None, 'Train steps per model (default: the config).')
_PREDICTOR_STEPS = flags.DEFINE_integer('predictor_steps', 1500, 'Attribute predictor steps.')

MODELS = {'VAE': 'vae', 'VAE_Dis_l': 'vae_disl', 'GAN': 'gan', 'VAE/GAN': 'vaegan'}
CAPTIONS = {
    'samples': 'Samples from p(z) through each decoder, the same z in every row (paper Fig. 3).',
    'reconstructions': 'Test images and their reconstructions (paper Fig. 4).',
    'attribute_vectors': 'VAE/GAN: test images with attribute vectors added (paper Fig. 5).',
    'attribute_sweep': 'VAE/GAN: z + a v for each attribute vector v, first test image.',
    'interpolation': 'VAE/GAN: straight lines in z between pairs of test images.',
}


def model_config(kind: str) -> ml_collections.ConfigDict:
  if _DATASET.value == 'synthetic':
    config = synthetic.get_config(kind)
  else:
    config = celeba64.get_config()
    config.model.kind = kind
    config.data.raw_dir = _RAW_DIR.value
  config.data.data_dir = _DATA_DIR.value
  if _STEPS.value:
    config.num_train_steps = _STEPS.value
  return config


def write_index(out: str, written: dict[str, dict[str, str]], accuracy: dict) -> str:
  lines = [f'# VAE/GAN reproduction ({_DATASET.value})', '']
  for name, paths in written.items():
    lines += [f'## {name}', '', CAPTIONS[name], '',
              f'![{name}]({os.path.relpath(paths["png"], out)})', '',
              f'Numbers: [{os.path.basename(paths["json"])}]'
              f'({os.path.relpath(paths["json"], out)})', '']
  edits = json.load(open(written['attribute_vectors']['json'])).get('edit_success', {})
  lines += ['## Attribute edits', '', 'Share of test images whose predicted attribute moves as '
            'intended when the vector is added / subtracted:', '',
            '| attribute | added: up | subtracted: down |', '|---|---|---|']
  lines += [f'| {name} | {value["moved_up_when_added"]:.2f} | '
            f'{value["moved_down_when_subtracted"]:.2f} |' for name, value in edits.items()]
  lines += ['']
  trained = {name: value for name, value in accuracy.items() if value is not None}
  lines += ['## Attribute predictor', '', 'Test accuracy per attribute:', '',
            '| attribute | accuracy |', '|---|---|']
  lines += [f'| {name} | {value:.3f} |' for name, value in trained.items()]
  path = os.path.join(out, 'index.md')
  with open(path, 'w') as file:
    file.write('\n'.join(lines) + '\n')
  return path


def main(argv: list[str]) -> None:
  del argv
  metric_writers.quiet_library_logs()
  out = os.path.expanduser(_OUT.value)
  run_dirs = {}
  for label, kind in MODELS.items():
    run_dirs[label] = os.path.join(out, 'runs', kind)
    logging.info('Training %s in %s.', label, run_dirs[label])
    config = model_config(kind)
    train.train_and_evaluate(config, run_dirs[label])

  data, model = config.data, config.model
  open_split = lambda split: input_pipeline.open_prepared(
      os.path.expanduser(data.data_dir), data.name, model.resolution, model.image_channels, split)
  predictor_dir = os.path.join(out, 'predictor')
  predictor = attribute_predictor.train_predictor(open_split(data.train_split),
                                                  steps=_PREDICTOR_STEPS.value)
  accuracy = attribute_predictor.accuracy(predictor, open_split(data.eval_split))
  attribute_predictor.save(predictor, predictor_dir, {'test_accuracy': accuracy})

  figure_dir = os.path.join(out, 'figures')
  written = {}
  written.update(figures.make_figure('samples', run_dirs, figure_dir, count=8, seed=0))
  written.update(figures.make_figure(
      'reconstructions', {label: run_dirs[label] for label in ('VAE', 'VAE_Dis_l', 'VAE/GAN')},
      figure_dir, count=8, data_dir=None))
  written.update(figures.make_figure(
      'attributes', {'VAE/GAN': run_dirs['VAE/GAN']}, figure_dir, data_dir=None,
      attributes=['paper'], num_encode=10_000, num_test=64, strengths=[-2, -1, 0, 1, 2],
      interpolation_steps=8, predictor=predictor_dir))
  index = write_index(out, written, accuracy)
  print(json.dumps({'index': index, **{name: paths['png'] for name, paths in written.items()}}))


if __name__ == '__main__':
  app.run(main)
