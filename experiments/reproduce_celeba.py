r"""The reproduction driver: train the paper's four models and three conditional ones, the
attribute predictor, then every figure and the attribute-similarity table, and an index page that
shows them.

  python experiments/reproduce_celeba.py --out=reproduction                   # synthetic, CPU
  python experiments/reproduce_celeba.py --out=reproduction --dataset=celeba \
      --raw_dir=~/celeba                                                       # the paper's run

--dataset=synthetic trains configs/synthetic.py (32x32) for VAE, VAE_Dis_l, GAN and VAE/GAN,
and conditional VAE, GAN and VAE/GAN (on the 14 attributes the faces draw), on the embedded
synthetic faces, with a small schedule of SYNTHETIC_STEPS steps each so that the whole
reproduction fits in under an hour on a 2-core CPU (docs/figures.md has the measured
time). --dataset=celeba trains configs/celeba64.py (the paper's Feb 2016 constants, and its
'conditional' variant on all 40 attributes) on CelebA, which needs a GPU or TPU. --steps
overrides the number of steps of every model (a quick check: --steps=20). Runs go to
OUT/runs/NAME and resume when the command is repeated; figures and their JSON go to
OUT/figures; OUT/index.md shows them.
"""
from __future__ import annotations

import json
import os

import ml_collections
from absl import flags, logging

from vaegan_jax import console, folders
from vaegan_jax.analysis import figures
from vaegan_jax.configs import celeba64, synthetic
from vaegan_jax.data import input_pipeline
from vaegan_jax.metrics import attribute_predictor
from vaegan_jax.training import train

_OUT = flags.DEFINE_string('out', 'reproduction', 'Folder for runs, figures and index.md.')
_DATASET = flags.DEFINE_enum('dataset', 'synthetic', ['synthetic', 'celeba'], 'Which data.')
_RAW_DIR = flags.DEFINE_string('raw_dir', '', "celeba: CelebA's raw files (prepared once).")
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'Prepared datasets.')
_STEPS = flags.DEFINE_integer('steps', None, 'Train steps per model (default: SYNTHETIC_STEPS '
                              'for synthetic, the config for celeba).')
_PREDICTOR_STEPS = flags.DEFINE_integer('predictor_steps', 1500, 'Attribute predictor steps.')
_QUALITY_SAMPLES = flags.DEFINE_integer('quality_samples', None, 'Images per set for the sample '
                                        'quality table (default: 2000 synthetic, 10000 celeba).')
_EXTRACTOR = flags.DEFINE_enum('extractor', 'domain', ['domain', 'inception'], 'Feature space of '
                               'the quality table (inception needs pytorch-fid\'s weights).')
_INCEPTION_WEIGHTS = flags.DEFINE_string('inception_weights', None, "pytorch-fid's weights file.")
_INCEPTION_SHA256 = flags.DEFINE_string('inception_sha256', None, 'The full SHA-256 of another '
                                        "release of the weights (default: pytorch-fid's).")

SYNTHETIC_STEPS = 500
# label -> (model kind, conditional); the label is the row name in the figures.
MODELS = {'VAE': ('vae', False), 'VAE_Dis_l': ('vae_disl', False), 'GAN': ('gan', False),
          'VAE/GAN': ('vaegan', False),
          'cVAE': ('vae', True), 'cGAN': ('gan', True), 'cVAE/GAN': ('vaegan', True)}
CAPTIONS = {
    'samples': 'Samples from p(z) through each decoder, the same z in every row (paper Fig. 3).',
    'reconstructions': 'Test images and their reconstructions (paper Fig. 4).',
    'attribute_vectors': 'VAE/GAN: test images with attribute vectors added (paper Fig. 5).',
    'attribute_sweep': 'VAE/GAN: z + a v for each attribute vector v, first test image.',
    'interpolation': 'VAE/GAN: straight lines in z between pairs of test images.',
    'conditional_samples': 'Conditional models: samples for the attributes of the test images in '
                           'the top row, one z per column shared by all models (paper Fig. 6).',
    'quality': 'FID of each model\'s samples from p(z) and of its reconstructions of test images '
               '(lower is better); the table below has KID, precision and recall too.',
}
TOGGLES_CAPTION = ('{run}: the first test image\'s attributes, then each attribute switched to '
                   'its opposite, one row each; the same z in every row.')


def run_name(kind: str, conditional: bool) -> str:
  return f'cond_{kind}' if conditional else kind


def model_config(kind: str, conditional: bool) -> ml_collections.ConfigDict:
  if _DATASET.value == 'synthetic':
    config = synthetic.get_config(f'{kind},conditional' if conditional else kind)
    config.num_train_steps = SYNTHETIC_STEPS
  else:
    config = celeba64.get_config('conditional' if conditional else None)
    config.model.kind = kind
    config.data.raw_dir = _RAW_DIR.value
  config.data.data_dir = _DATA_DIR.value
  if _STEPS.value:
    config.num_train_steps = _STEPS.value
  return config


def quality_section(numbers: dict) -> list[str]:
  """The sample-quality table, and the paper's ordering claim stated as measured."""
  table, name = numbers['table'], numbers['extractor']
  lines = ['## Sample quality', '',
           f'In the {name} feature space ({numbers["extractor_checkpoint"]}), '
           f'{numbers["num_samples"]} images per set, against the test split. FID and KID: '
           f'lower is better; precision (samples inside the data\'s manifold) and recall (data '
           f'inside the samples\' manifold): higher is better.', '',
           '| model | FID samples | KID samples | precision | recall | FID reconstructions |',
           '|---|---|---|---|---|---|']
  for label, row in table.items():
    samples = row['samples']
    reconstructions = row.get('reconstructions', {}).get('fid')
    lines.append(f'| {label} | {samples["fid"]:.2f} | {samples["kid"]:.4f} | '
                 f'{samples["precision"]:.3f} | {samples["recall"]:.3f} | '
                 f'{"-" if reconstructions is None else f"{reconstructions:.2f}"} |')
  fid = {label: row['samples']['fid'] for label, row in table.items()}
  if {'VAE', 'GAN', 'VAE/GAN'} <= set(fid):
    verdict = lambda label: 'ahead of' if fid[label] < fid['VAE'] else 'not ahead of'
    lines += ['', f'The paper\'s ordering, measured: VAE/GAN (sample FID {fid["VAE/GAN"]:.2f}) '
              f'is {verdict("VAE/GAN")} VAE ({fid["VAE"]:.2f}), and GAN ({fid["GAN"]:.2f}) is '
              f'{verdict("GAN")} VAE.']
  return lines + ['']


def write_index(out: str, written: dict[str, dict[str, str]], accuracy: dict) -> str:
  lines = [f'# VAE/GAN reproduction ({_DATASET.value})', '']
  for name, paths in written.items():
    caption = CAPTIONS.get(name) or TOGGLES_CAPTION.format(
        run=json.load(open(paths['json']))['run'])
    lines += [f'## {name}', '', caption, '',
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
  table = json.load(open(written['conditional_samples']['json']))['table']
  lines += ['## Attribute similarity', '', 'Requested attributes (y in {-1, +1}) against those the '
            'predictor sees in the generated images (2 P - 1); the test images are the reference '
            '(paper Table 1, the protocol of Attribute2Image), and the test images scored against '
            'another image\'s attributes show what ignoring the request scores:', '',
            '| model | cosine similarity | mean squared error |', '|---|---|---|']
  lines += [f'| {label} | {row["cosine_similarity"]:.3f} | {row["mean_squared_error"]:.3f} |'
            for label, row in table.items()]
  lines += ['']
  lines += quality_section(json.load(open(written['quality']['json'])))
  trained = {name: value for name, value in accuracy.items() if value is not None}
  lines += ['## Attribute predictor', '', 'Test accuracy per attribute:', '',
            '| attribute | accuracy |', '|---|---|']
  lines += [f'| {name} | {value:.3f} |' for name, value in trained.items()]
  return folders.Folder(out).write_atomically('index.md', lambda file: file.write(
      ('\n'.join(lines) + '\n').encode()))


def main(argv: list[str]) -> None:
  del argv
  out = os.path.expanduser(_OUT.value)
  run_dirs = {}
  for label, (kind, conditional) in MODELS.items():
    run_dirs[label] = os.path.join(out, 'runs', run_name(kind, conditional))
    logging.info('Training %s in %s.', label, run_dirs[label])
    train.train_and_evaluate(model_config(kind, conditional), run_dirs[label])

  # Every run reads the same dataset: the unconditional VAE/GAN's config names it.
  data_config = model_config('vaegan', conditional=False)
  predictor_dir = os.path.join(out, 'predictor')
  predictor = attribute_predictor.train_predictor(
      input_pipeline.open_configured(data_config, data_config.data.train_split),
      steps=_PREDICTOR_STEPS.value)
  accuracy = attribute_predictor.accuracy(
      predictor, input_pipeline.open_configured(data_config, data_config.data.eval_split))
  attribute_predictor.save(predictor, folders.Folder(out).sub('predictor'),
                           {'test_accuracy': accuracy})

  figure_dir = os.path.join(out, 'figures')
  written = {}
  unconditional = {label: run_dirs[label] for label in ('VAE', 'VAE_Dis_l', 'GAN', 'VAE/GAN')}
  written.update(figures.make_figure('samples', unconditional, figure_dir, count=8, seed=0))
  written.update(figures.make_figure(
      'reconstructions', {label: run_dirs[label] for label in ('VAE', 'VAE_Dis_l', 'VAE/GAN')},
      figure_dir, count=8, data_dir=None))
  written.update(figures.make_figure(
      'attributes', {'VAE/GAN': run_dirs['VAE/GAN']}, figure_dir, data_dir=None,
      attributes=['paper'], num_encode=10_000, num_test=64, strengths=[-2, -1, 0, 1, 2],
      interpolation_steps=8, predictor=predictor_dir))
  written.update(figures.make_figure(
      'conditional', {label: run_dirs[label] for label in ('cVAE', 'cGAN', 'cVAE/GAN')},
      figure_dir, count=8, seed=0, data_dir=None, predictor=predictor_dir, num_requests=1000))
  written.update(figures.make_figure(
      'quality', unconditional, figure_dir, data_dir=None, extractor=_EXTRACTOR.value,
      inception_weights=_INCEPTION_WEIGHTS.value,
      inception_sha256=_INCEPTION_SHA256.value, seed=0,
      num_samples=_QUALITY_SAMPLES.value or (2000 if _DATASET.value == 'synthetic' else 10_000)))
  index = write_index(out, written, accuracy)
  print(json.dumps({'index': index, **{name: paths['png'] for name, paths in written.items()}}))


if __name__ == '__main__':
  console.run_main('reproduce_celeba.py', main)
