r"""The paper's CelebA figures from trained runs: one command each, a PNG plus its numbers as JSON.

  python -m vaegan_jax.analysis.figures --figure=samples --out=figures \
      --run=VAE=runs/vae --run=VAE_Dis_l=runs/vae_disl --run=GAN=runs/gan --run=VAE/GAN=runs/vaegan
  python -m vaegan_jax.analysis.figures --figure=reconstructions --out=figures \
      --run=VAE=runs/vae --run=VAE_Dis_l=runs/vae_disl --run=VAE/GAN=runs/vaegan
  python -m vaegan_jax.analysis.figures --figure=attributes --out=figures --run=VAE/GAN=runs/vaegan
  python -m vaegan_jax.analysis.figures --figure=conditional --out=figures --predictor=runs/predictor \
      --run=cVAE=runs/cond_vae --run=cGAN=runs/cond_gan --run=cVAE/GAN=runs/cond_vaegan
  python -m vaegan_jax.analysis.figures --figure=quality --out=figures --extractor=domain \
      --run=VAE=runs/vae --run=VAE_Dis_l=runs/vae_disl --run=GAN=runs/gan --run=VAE/GAN=runs/vaegan

samples          Fig. 3: one labelled row of samples from a fixed z ~ N(0, I) per run.
reconstructions  Fig. 4: the first test images, then each run's reconstructions of them.
attributes       Fig. 5: attribute vectors (mean z with an attribute minus mean z without, over
                 --num_encode training images) added to the first --num_test test images, one row
                 per attribute; a strength sweep z + a v; interpolations between test images.
conditional      Fig. 6 and the attribute-similarity table: conditional runs generate from
                 z ~ N(0, I) and the attributes y of --num_requests test images; an attribute
                 predictor (vaegan-attribute-predictor) judges the images, and the table gives the
                 cosine similarity and mean squared error between the requested y and the
                 predicted 2 P(attribute) - 1, with the test images themselves as the reference
                 row, and the test images scored against another image's y (what ignoring the
                 request scores). Per run, a second figure switches one attribute at a time.
quality          FID, KID, precision and recall (quality.py) of each run's --num_samples samples
                 from p(z) and of its reconstructions of as many test images, against the test
                 split, in the --extractor feature space (extractors.py: 'domain', an attribute
                 predictor trained once on the runs' dataset, or 'inception', the standard FID
                 network), and each set's checkerboard index against the test images; bar
                 charts of FID.

Runs are read from their workdirs (the checkpoint holds the config); the test and training images
come from the dataset the first run was trained on (--data_dir overrides where it lies).
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from typing import Any, Callable, Sequence

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from vaegan_jax import console, folders, ranges
from vaegan_jax.analysis import attributes, plots, runs
from vaegan_jax.data import grids, input_pipeline, preprocess
from vaegan_jax.metrics import attribute_predictor, extractors, inception, quality
from vaegan_jax.training import checkpoints

# The 18 attributes the authors' code edited (celeba_aegan.py, `selected_attributes`).
PAPER_ATTRIBUTES = (
    'Bald', 'Bangs', 'Black_Hair', 'Blond_Hair', 'Bushy_Eyebrows', 'Eyeglasses', 'Gray_Hair',
    'Heavy_Makeup', 'High_Cheekbones', 'Male', 'Mustache', 'Pale_Skin', 'Rosy_Cheeks', 'Smiling',
    'Straight_Hair', 'Wavy_Hair', 'Wearing_Lipstick', 'Young')
QUALITY_METRICS = ('fid', 'kid', 'kid_std', 'precision', 'recall')


# ---------------------------------------------------------------- drawing
def labelled_rows(rows: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
  """Rows of images ([K, R, R, C] in [-1, 1]) side by side, each with its label on the left."""
  font = ImageFont.load_default()
  probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  margin = 8 + int(max(probe.textlength(label, font=font) for label, _ in rows))
  strips = [grids.image_grid(images, columns=len(images)) for _, images in rows]
  width = margin + max(strip.shape[1] for strip in strips)
  canvas = Image.new('RGB', (width, sum(strip.shape[0] for strip in strips)), 'white')
  draw = ImageDraw.Draw(canvas)
  top = 0
  for (label, _), strip in zip(rows, strips):
    canvas.paste(Image.fromarray(strip), (margin, top))
    draw.text((4, top + strip.shape[0] // 2 - 6), label, fill='black', font=font)
    top += strip.shape[0]
  return np.asarray(canvas)


def save(out: folders.Folder, name: str, image: np.ndarray, numbers: dict) -> dict[str, str]:
  """OUT/NAME.png and OUT/NAME.json, each written whole; returns their paths."""
  return {'png': out.write_atomically(f'{name}.png', lambda file: Image.fromarray(image).save(
              file, format='PNG')),
          'json': out.write_atomically(f'{name}.json', lambda file: file.write(
              json.dumps(numbers, indent=2).encode()))}


# ---------------------------------------------------------------- data
def check_runs_fit(loaded: dict[str, runs.Run], what: str) -> None:
  """Raises ValueError unless the runs share image shape, latent size and conditioning, and are
  conditional exactly when the figure is 'conditional'. The quality figure takes any mix of
  conditional and unconditional runs: each is scored on its own."""
  scored_alone = what == 'quality'
  shapes = {label: (run.config.model.resolution, run.config.model.image_channels,
                    run.config.model.latent_dim) + (() if scored_alone else (run.condition_on,))
            for label, run in loaded.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(f'The runs of one {what} figure must share resolution, channels, '
                     f'latent size and model.condition_on; got {shapes}.')
  wrong = [label for label, run in loaded.items() if not scored_alone and bool(
      run.condition_on) != (what == 'conditional')]
  if wrong:
    raise ValueError(f'{wrong}: the {what} figure takes ' + (
        'conditional runs (model.condition_on set).' if what == 'conditional' else
        'unconditional runs; conditional ones go to --figure=conditional.'))


# ---------------------------------------------------------------- the figures
def drawn_from(run: runs.Run, prior: str) -> str:
  """The prior a run's samples come from: `prior`, or with 'run' the run's own quality.sampler
  (N(0, I) for runs saved before the key existed)."""
  return run.config.quality.get('sampler', 'standard') if prior == 'run' else prior


def samples_figure(loaded: dict[str, runs.Run], count: int, seed: int, prior: str = 'run',
                   data_dir: str | None = None) -> tuple[np.ndarray, dict]:
  """Fig. 3: every run decodes the same z ~ N(0, I); with a fitted prior [ours], the same draws
  moved into each run's own fit (its sample())."""
  check_runs_fit(loaded, 'samples')
  specs = {label: drawn_from(run, prior) for label, run in loaded.items()}
  rows = [(label if specs[label] == 'standard' else f'{label} ({specs[label]})',
           run.decode(run.prior(specs[label], data_dir).sample(count, seed)))
          for label, run in loaded.items()]
  numbers = {'seed': seed, 'count': count, 'prior': specs, 'runs': runs.provenance(loaded)}
  return labelled_rows(rows), numbers


def reconstructions_figure(loaded: dict[str, runs.Run], test_images: np.ndarray
                           ) -> tuple[np.ndarray, dict]:
  """Fig. 4: test images, then each run's reconstruction; the JSON holds each run's mean
  squared error per pixel on these images (pixels in [-1, 1])."""
  check_runs_fit(loaded, 'reconstructions')
  targets = preprocess.to_model_range(test_images)
  rows, errors = [('test images', targets)], {}
  for label, run in loaded.items():
    reconstructions = run.decode(run.encode(test_images))
    rows.append((label, reconstructions))
    errors[label] = float(np.mean((reconstructions - targets) ** 2))
  return labelled_rows(rows), {'count': len(test_images), 'mean_squared_error': errors}


def resolve_attributes(requested: Sequence[str], available: Sequence[str]) -> list[str]:
  """The requested names ('paper' = the authors' 18) that the dataset has; a ValueError listing
  the available ones for any other name."""
  names = list(PAPER_ATTRIBUTES) if list(requested) == ['paper'] else list(requested)
  unknown = [name for name in names if name not in available]
  if unknown:
    raise ValueError(f'Unknown attribute(s) {unknown}; this dataset has: '
                     f'{", ".join(available) or "no attributes"}.')
  return names


def slug(label: str) -> str:
  """A run label as part of a file name: 'cVAE/GAN' -> 'cvae_gan'."""
  return re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_')


def similarity(requested: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
  """The attribute-similarity numbers of one row of the table: requested y [N, A] against the
  predictor's predicted attributes [N, A] on the same scale (binary: y in {-1, +1} against
  2 P(attribute) - 1, as in Attribute2Image's protocol; real-valued: the scores against the
  regressed ones, as the paper's LFW table); with each attribute's agreement (the predicted
  sign equals the requested sign)."""
  agreement = np.mean(np.sign(predicted) == np.sign(requested), axis=0)
  return {'cosine_similarity': attributes.cosine_similarity(requested, predicted),
          'mean_squared_error': attributes.mean_squared_error(requested, predicted),
          'agreement': {name: float(value) for name, value in zip(names, agreement)}}


def conditional_figures(loaded: dict[str, runs.Run], test_split: input_pipeline.PreparedSplit,
                        predictor: attribute_predictor.Predictor, num_requests: int, count: int,
                        seed: int) -> dict[str, tuple[np.ndarray, dict]]:
  """Fig. 6 ('conditional_samples', with the similarity table in its JSON) and, per run,
  'conditional_toggles_LABEL': the first test image's y, then each attribute set to the opposite
  of its value there, one row each, for the same `count` z in every row."""
  check_runs_fit(loaded, 'conditional')
  first = next(iter(loaded.values()))
  if predictor.image_shape != tuple(first.config.model[key] for key in (
      'resolution', 'resolution', 'image_channels')):
    raise ValueError(f'The predictor judges {predictor.image_shape} images; the runs make '
                     f'{first.config.model.resolution}x{first.config.model.resolution} ones. '
                     f'Train the predictor on the runs\' dataset.')
  condition_on = first.condition_on
  judged = [name for name in condition_on if name in predictor.attribute_names
            and predictor.trained[predictor.attribute_names.index(name)]]
  if not judged:
    raise ValueError(f'The predictor was trained on none of the conditioned attributes '
                     f'{list(condition_on)}; train it on the runs\' dataset.')
  predictor_columns = [predictor.attribute_names.index(name) for name in judged]
  request_columns = [condition_on.index(name) for name in judged]
  test = test_split.read(np.arange(min(num_requests, len(test_split))))
  requested = first.conditions(test['attributes'], test_split.attribute_names)
  latents = np.random.default_rng(seed).standard_normal(
      (len(requested), first.config.model.latent_dim)).astype(np.float32)

  def judge(images, wanted=requested):
    return similarity(wanted[:, request_columns],
                      predictor.predicted_attributes(images)[:, predictor_columns], judged)

  shown = preprocess.to_model_range(test['image'][:count])
  rows = [('test images (their y)', shown)]
  # The second reference row pairs each test image with the next image's y: the score of real
  # faces that ignore the request, so a model must beat it to show that it follows y.
  table = {'test images': judge(test['image']),
           'test images, y of another image': judge(test['image'], np.roll(requested, 1, axis=0))}
  for label, run in loaded.items():
    generated = run.decode(latents, requested)
    table[label] = judge(generated)
    rows.append((label, generated[:count]))
  numbers = {'requests': len(requested), 'seed': seed, 'judged_attributes': judged,
             'coding': ('requested y in {-1, +1}; predicted 2 P(attribute) - 1'
                        if predictor.kind == 'binary' else
                        'requested y: the real-valued scores; predicted: the regressed scores'),
             'table': table, 'runs': runs.provenance(loaded)}
  figures = {'conditional_samples': (labelled_rows(rows), numbers)}

  base = requested[0]
  toggled = np.repeat(base[None], len(condition_on) + 1, axis=0)
  for index in range(len(condition_on)):
    toggled[index + 1, index] = -base[index]
  labels = ['as requested'] + [f'{name} {"off" if base[index] > 0 else "on"}'
                               for index, name in enumerate(condition_on)]
  for label, run in loaded.items():
    toggle_rows = [(row_label, run.decode(latents[:count], np.repeat(y[None], count, axis=0)))
                   for row_label, y in zip(labels, toggled)]
    figures[f'conditional_toggles_{slug(label)}'] = (labelled_rows(toggle_rows), {
        'run': label, 'requested': dict(zip(condition_on, base.tolist())), 'rows': labels})
  return figures


def quality_figure(loaded: dict[str, runs.Run], extractor: extractors.Extractor,
                   reference: extractors.Reference, test_split: input_pipeline.PreparedSplit,
                   num_samples: int, seed: int, prior: str = 'run',
                   data_dir: str | None = None) -> tuple[np.ndarray, dict]:
  """FID, KID, precision and recall of each run's samples from p(z) (or from a prior fitted to
  its codes [ours]) and of its reconstructions of the first test images, against the test split,
  in one feature space; bar charts of FID. Conditional runs draw their samples for the test
  images' attributes."""
  check_runs_fit(loaded, 'quality')
  test = test_split.read(np.arange(min(num_samples, len(test_split))))
  table = {}
  for label, run in loaded.items():
    conditions = (run.conditions(test['attributes'], test_split.attribute_names)
                  if run.condition_on else None)
    latents = run.prior(drawn_from(run, prior), data_dir).sample(len(test['image']), seed)
    sets = {'samples': run.decode(latents, conditions)}
    if run.networks.encoder is not None:
      sets['reconstructions'] = run.decode(run.encode(test['image'], conditions), conditions)
    table[label] = {}
    for name, images in sets.items():
      measured = extractors.compare(extractor, reference, images, name)
      table[label][name] = {metric: measured[f'{metric}_{extractor.name}_{name}']
                            for metric in QUALITY_METRICS}
      real = preprocess.to_model_range(test['image'])
      table[label][name]['checkerboard'] = quality.checkerboard_index(images, real)
      table[label][name]['sharpness'] = quality.sharpness_ratio(images, real)
  charts = [plots.bar_chart(f'FID ({extractor.name} features) of {name}, lower is better',
                      {label: row[name]['fid'] for label, row in table.items() if name in row})
            for name in ('samples', 'reconstructions')
            if any(name in row for row in table.values())]
  image = np.concatenate([np.pad(chart, ((0, 0), (0, max(c.shape[1] for c in charts)
                                                   - chart.shape[1]), (0, 0)),
                                 constant_values=255) for chart in charts])
  numbers = {'extractor': extractor.name, 'extractor_checkpoint': extractor.checkpoint,
             'reference': {'split': test_split.split, 'images': reference.statistics.count},
             'num_samples': len(test['image']), 'seed': seed,
             'prior': {label: drawn_from(run, prior) for label, run in loaded.items()},
             'table': table,
             'runs': runs.provenance(loaded)}
  return image, numbers


def edit_numbers(run: runs.Run, predictor: attribute_predictor.Predictor,
                 test_latents: np.ndarray, present: np.ndarray, names: Sequence[str],
                 vectors: np.ndarray) -> dict[str, dict[str, float]]:
  """Per attribute, how often adding / subtracting its vector moves the predictor as intended,
  measured against the unedited reconstruction decode(z)."""
  column = {name: predictor.attribute_names.index(name) for name in names}
  before = predictor.predicted_attributes(run.decode(test_latents))
  results = {}
  for index, (name, vector) in enumerate(zip(names, vectors)):
    if not predictor.trained[column[name]]:
      continue
    predicted = lambda latents: predictor.predicted_attributes(run.decode(latents))[
        :, column[name]]
    results[name] = attributes.edit_success(
        before[:, column[name]], predicted(test_latents + vector),
        predicted(test_latents - vector), present[:, index])
  return results


def attribute_figures(run: runs.Run, train_split: input_pipeline.PreparedSplit,
                      test_split: input_pipeline.PreparedSplit, names: Sequence[str],
                      num_encode: int, num_test: int, strengths: Sequence[float],
                      interpolation_steps: int,
                      predictor: attribute_predictor.Predictor | None = None
                      ) -> dict[str, tuple[np.ndarray, dict]]:
  """Fig. 5 and its companions: 'attribute_vectors', 'attribute_sweep', 'interpolation'. With a
  predictor, the vectors' JSON also holds each attribute's edit success (attributes.edit_success)
  over the test images."""
  paper_default = list(names) == ['paper']
  names = resolve_attributes(names, train_split.attribute_names)
  encoded = train_split.read(np.arange(min(num_encode, len(train_split))))
  encoded['attributes'] = attributes.presence(encoded['attributes'])
  counts, total = encoded['attributes'].sum(axis=0), len(encoded['attributes'])
  constant = [name for name in names
              if not 0 < counts[train_split.attribute_names.index(name)] < total]
  if constant and not paper_default:
    raise ValueError(f'{constant} never vary over the {total} encoded images, so they have no '
                     f'vector; choose other attributes or raise --num_encode.')
  names = [name for name in names if name not in constant]   # the 18: keep those drawn
  skipped = constant
  columns = [train_split.attribute_names.index(name) for name in names]
  vectors = attributes.attribute_vectors(run.encode(encoded['image']),
                                         encoded['attributes'][:, columns])
  test = test_split.read(np.arange(min(num_test, len(test_split))))
  test['attributes'] = attributes.presence(test['attributes'])
  test_latents = run.encode(test['image'])
  shown = preprocess.to_model_range(test['image'])
  rows = [('test images', shown), ('reconstructions', run.decode(test_latents))]
  rows += [(f'+ {name}', run.decode(test_latents + vector)) for name, vector in zip(names, vectors)]
  present = encoded['attributes'][:, columns].sum(axis=0)
  numbers = {'encoded_images': len(encoded['image']), 'test_images': len(shown),
             'skipped_constant': skipped,
             'attributes': {name: {'present': int(count), 'vector_norm': float(np.linalg.norm(v))}
                            for name, count, v in zip(names, present, vectors)}}
  if predictor is not None:
    numbers['edit_success'] = edit_numbers(run, predictor, test_latents,
                                           test['attributes'][:, columns], names, vectors)
  figures = {'attribute_vectors': (labelled_rows(rows), numbers)}

  sweep_rows = [(f'{name} x ({", ".join(f"{a:g}" for a in strengths)})',
                 run.decode(attributes.strength_sweep(test_latents[0], vector, strengths)))
                for name, vector in zip(names, vectors)]
  figures['attribute_sweep'] = (labelled_rows(sweep_rows), {'strengths': list(strengths),
                                                            'attributes': names})
  pairs = [(index, index + 1) for index in range(0, min(len(shown) - 1, 8), 2)]
  interpolation_rows = [(f'test {a} -> {b}', run.decode(attributes.interpolate(
      test_latents[a], test_latents[b], interpolation_steps))) for a, b in pairs]
  figures['interpolation'] = (labelled_rows(interpolation_rows),
                              {'pairs': pairs, 'steps': interpolation_steps})
  return figures


# ---------------------------------------------------------------- the registry
@dataclasses.dataclass(frozen=True)
class Request:
  """What one figure command asked for: the runs, read from their workdirs, and the options
  (the flags below, by name)."""
  runs: dict[str, runs.Run]
  options: dict[str, Any]

  @property
  def first(self) -> runs.Run:
    return next(iter(self.runs.values()))

  def split(self, which: str) -> input_pipeline.PreparedSplit:
    """'train_split' or 'eval_split' of the dataset the first run was trained on."""
    return self.first.split(which, self.options.get('data_dir'))

  def predictor(self) -> attribute_predictor.Predictor | None:
    return attribute_predictor.load(self.options['predictor']) if self.options.get(
        'predictor') else None


# A figure: Request -> {file name: (image, numbers)}. Adding one is a function and its flags.
FIGURES: dict[str, Callable[[Request], dict[str, tuple[np.ndarray, dict]]]] = {}


def figure(name: str):
  def register(make):
    FIGURES[name] = make
    return make
  return register


@figure('samples')
def _samples(request: Request):
  options = request.options
  return {'samples': samples_figure(request.runs, options['count'], options['seed'],
                                    options.get('prior', 'run'), options.get('data_dir'))}


@figure('reconstructions')
def _reconstructions(request: Request):
  test = request.split('eval_split')
  images = test.read(np.arange(min(request.options['count'], len(test))))['image']
  return {'reconstructions': reconstructions_figure(request.runs, images)}


@figure('attributes')
def _attributes(request: Request):
  if len(request.runs) != 1:
    raise ValueError('The attributes figure takes one --run.')
  check_runs_fit(request.runs, 'attributes')
  options = request.options
  return attribute_figures(
      request.first, request.split('train_split'), request.split('eval_split'),
      options['attributes'], options['num_encode'], options['num_test'],
      [float(a) for a in options['strengths']], options['interpolation_steps'],
      request.predictor())


@figure('conditional')
def _conditional(request: Request):
  predictor = request.predictor()
  if predictor is None:
    raise ValueError('The conditional figure needs --predictor: a folder written by '
                     'vaegan-attribute-predictor on the runs\' dataset.')
  return conditional_figures(request.runs, request.split('eval_split'), predictor,
                             request.options['num_requests'], request.options['count'],
                             request.options['seed'])


@figure('quality')
def _quality(request: Request):
  options = request.options
  return {'quality': quality_figure(request.runs, *quality_space(request.first, options),
                                    request.split('eval_split'), options['num_samples'],
                                    options['seed'], options.get('prior', 'run'),
                                    options.get('data_dir'))}


def quality_space(run: runs.Run, options: dict
                  ) -> tuple[extractors.Extractor, extractors.Reference]:
  """The feature space options name, and the run's test split's reference statistics in it
  (extractors.quality_space, as the training loop measures)."""
  space = extractors.quality_space(
      run.config, options['extractor'], options['num_samples'], options.get('data_dir'),
      options.get('inception_weights'), options.get('inception_sha256'),
      options.get('extractor_steps', extractors.DOMAIN_PREDICTOR_STEPS))
  if space is None:
    raise ValueError(f'{run.config.data.name} has no attribute that varies, so no domain '
                     f'feature extractor can be trained on it; use --extractor=inception.')
  return space


def make_figure(figure: str, run_dirs: dict[str, str], out_dir: str, **options) -> dict:
  """Writes the figure's files; returns {name: {'png': path, 'json': path}}."""
  out = folders.Folder(out_dir, 'the output folder', '--out').make()     # before the work
  loaded = {label: runs.load_run(workdir) for label, workdir in run_dirs.items()}
  made = FIGURES[figure](Request(loaded, options))
  return {name: save(out, name, image, numbers) for name, (image, numbers) in made.items()}


# ---------------------------------------------------------------- command line
def define_flags() -> None:
  """--figure, --run and --out; every other flag here reaches the figure as an option."""
  flags.DEFINE_enum('figure', None, list(FIGURES), 'Which figure.', required=True)
  flags.DEFINE_multi_string('run', None, 'LABEL=WORKDIR of a trained run (repeat).',
                            required=True)
  flags.DEFINE_string('out', 'figures', 'Folder for the PNG and JSON files.')
  flags.DEFINE_string('data_dir', None, "Where the runs' dataset is prepared (default: theirs).")
  flags.DEFINE_integer('count', 8, 'samples: images per row; reconstructions: test images.',
                       lower_bound=1, upper_bound=1024)
  flags.DEFINE_integer('seed', 0, 'samples: seed of the shared z.',
                       lower_bound=ranges.SEEDS[0], upper_bound=ranges.SEEDS[1])
  flags.DEFINE_string('prior', 'run', "samples, quality: p(z) to draw from: run (each run's "
                      'quality.sampler, N(0, I) unless its config names a prior), standard '
                      "(N(0, I)), or [ours] gaussian, gmm:K or vae2 fitted to each run's codes "
                      '(model/priors.py; the fit is kept in its workdir).')
  flags.DEFINE_list('attributes', ['paper'], "attributes: names, or 'paper' for the 18.")
  flags.DEFINE_integer('num_encode', 10_000, 'attributes: training images encoded.',
                       lower_bound=ranges.IMAGE_COUNTS[0], upper_bound=ranges.IMAGE_COUNTS[1])
  flags.DEFINE_integer('num_test', 64, 'attributes: test images edited.',
                       lower_bound=ranges.IMAGE_COUNTS[0], upper_bound=ranges.IMAGE_COUNTS[1])
  flags.DEFINE_list('strengths', ['-2', '-1', '0', '1', '2'], 'attributes: sweep strengths a.')
  console.finite_numbers('strengths', *ranges.EDIT_STRENGTHS)
  flags.DEFINE_integer('interpolation_steps', 8, 'attributes: images per interpolation.',
                       lower_bound=2, upper_bound=1024)
  flags.DEFINE_string('predictor', None, 'attributes: a trained attribute predictor (its --out '
                      'folder) to measure how often each edit works; conditional: the judge '
                      '(required).')
  flags.DEFINE_enum('extractor', 'domain', ['domain', 'inception'], 'quality: the feature '
                    'space: an attribute predictor trained on the runs\' dataset (made once) or '
                    'the standard FID Inception network.')
  flags.DEFINE_string('inception_weights', None, "quality: pytorch-fid's Inception weights file "
                      '(default: downloaded once into ~/.cache/vaegan_jax).')
  flags.DEFINE_string('inception_sha256', None, 'quality: the full SHA-256 of another release '
                      "of the Inception weights (default: pytorch-fid's file's).")
  flags.DEFINE_integer('num_samples', 10_000, 'quality: images per set (samples, and test '
                       'images reconstructed).', lower_bound=ranges.IMAGE_COUNTS[0],
                       upper_bound=ranges.IMAGE_COUNTS[1])
  flags.DEFINE_integer('extractor_steps', 1500, 'quality: training steps of the domain '
                       'extractor when it is made (once per dataset).',
                       lower_bound=ranges.STEP_COUNTS[0], upper_bound=ranges.STEP_COUNTS[1])
  flags.DEFINE_integer('num_requests', 1000, 'conditional: test attribute vectors to generate '
                       'from and judge.', lower_bound=ranges.IMAGE_COUNTS[0],
                       upper_bound=ranges.IMAGE_COUNTS[1])


def main(argv: list[str]) -> None:
  del argv
  args = flags.FLAGS
  options = {flag.name: flag.value for flag in args.get_flags_for_module(sys.modules[__name__])
             if flag.name not in ('figure', 'run', 'out')}
  if args.figure == 'quality' and args.extractor == 'inception':
    inception.check_weights_path(args.inception_weights)      # before the runs are loaded
  written = make_figure(args.figure, runs.parse_runs(args.run), args.out, **options)
  for name, paths in written.items():
    print(f'{name}: {paths["png"]} {paths["json"]}')


def run() -> None:
  """Console script `vaegan-figures`."""
  define_flags()
  # WeightsError and DataError are ValueErrors; a run whose checkpoints are all unusable too.
  console.run_main('vaegan-figures', main,
                   (ValueError, FileNotFoundError, checkpoints.UnusableCheckpoints,
                    folders.FolderError))


if __name__ == '__main__':
  run()
