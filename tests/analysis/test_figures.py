"""Attribute arithmetic and similarity metrics against hand-computed values; every figure command
on tiny runs of the four model kinds; the messages for a missing run and an unknown attribute."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tiny_runs import REPO, initialised_runs
from vaegan_jax.analysis import attributes, figures, runs
from vaegan_jax.configs import tiny
from vaegan_jax.data import grids, input_pipeline
from vaegan_jax.metrics import attribute_predictor
from vaegan_jax.model import priors
from vaegan_jax import folders


# ---------------------------------------------------------------- arithmetic
def test_attribute_vectors_by_hand():
  latents = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 10.0]])
  present = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool)
  vectors = attributes.attribute_vectors(latents, present)
  # attribute 0: mean of rows 0,1 = (2, 1); of rows 2,3 = (6, 7) -> (-4, -6)
  # attribute 1: mean of rows 1,2 = (4, 3); of rows 0,3 = (4, 5) -> (0, -2)
  np.testing.assert_allclose(vectors, [[-4.0, -6.0], [0.0, -2.0]])


def test_attribute_vector_needs_both_groups():
  with pytest.raises(ValueError, match=r'column\(s\) \[1\] are present in all or none'):
    attributes.attribute_vectors(np.zeros((3, 2)), np.array([[1, 0], [0, 0], [1, 0]], bool))


def test_sweep_and_interpolation_by_hand():
  sweep = attributes.strength_sweep(np.array([1.0, 1.0]), np.array([2.0, -1.0]), [-1, 0, 0.5])
  np.testing.assert_allclose(sweep, [[-1.0, 2.0], [1.0, 1.0], [2.0, 0.5]])
  path = attributes.interpolate(np.array([0.0, 4.0]), np.array([2.0, 0.0]), 3)
  np.testing.assert_allclose(path, [[0.0, 4.0], [1.0, 2.0], [2.0, 0.0]])


def test_similarity_metrics_by_hand():
  requested = np.array([[1.0, -1.0], [1.0, 1.0]])
  predicted = np.array([[1.0, 1.0], [2.0, 2.0]])
  # rows: cos = 0 and cos = 1 -> mean 0.5; squared errors (0, 4, 1, 1) -> mean 1.5
  assert attributes.cosine_similarity(requested, predicted) == pytest.approx(0.5)
  assert attributes.mean_squared_error(requested, predicted) == pytest.approx(1.5)


# ---------------------------------------------------------------- figures on tiny runs
@pytest.fixture(scope='module')
def tiny_runs(tmp_path_factory):
  """One checkpointed run per model kind, and the prepared synthetic dataset they name."""
  return initialised_runs(tmp_path_factory.mktemp('runs'), (
      'vae', 'vae_disl', 'gan', 'vaegan', 'vae,conditional', 'gan,conditional',
      'vaegan,conditional'))


def check_written(paths, height):
  image = Image.open(paths['png'])
  assert image.mode == 'RGB' and height in (None, image.size[1])
  numbers = json.load(open(paths['json']))
  flat = json.dumps(numbers)
  assert 'NaN' not in flat and 'Infinity' not in flat
  return image, numbers


def test_samples_figure(tmp_path, tiny_runs):
  written = figures.make_figure('samples', {'VAE': tiny_runs['vae'], 'GAN': tiny_runs['gan'],
                                            'VAE/GAN': tiny_runs['vaegan']},
                                str(tmp_path), count=5, seed=3)
  image, numbers = check_written(written['samples'], height=3 * 18)
  assert image.size[0] > 5 * 17 + 1                      # the strip plus the label margin
  assert numbers['runs']['GAN']['kind'] == 'gan' and numbers['seed'] == 3
  pixels = np.asarray(image)
  strip = pixels[:, -(5 * 17 + 1):]
  assert not np.array_equal(strip[:18], strip[18:36])    # different networks, different rows


def test_samples_from_a_fitted_prior_move_the_same_draws_into_each_runs_fit(tmp_path, tiny_runs):
  chosen = {'VAE': tiny_runs['vae'], 'VAE/GAN': tiny_runs['vaegan']}
  written = figures.make_figure('samples', chosen, str(tmp_path), count=4, seed=3,
                                prior='gmm:2')
  image, numbers = check_written(written['samples'], height=2 * 18)
  assert numbers['prior'] == {'VAE': 'gmm:2', 'VAE/GAN': 'gmm:2'}
  for label, workdir in chosen.items():         # each run's fit is kept beside its checkpoints
    assert os.path.exists(priors.fit_path(workdir, 'gmm:2', 0)), label
  run = runs.load_run(tiny_runs['vae'])
  expected = grids.image_grid(run.decode(run.prior('gmm:2').sample(4, 3)), columns=4)
  np.testing.assert_array_equal(np.asarray(image)[:18, -(4 * 17 + 1):], expected)
  with pytest.raises(ValueError, match='no encoder'):
    figures.make_figure('samples', {'GAN': tiny_runs['gan']}, str(tmp_path), count=4, seed=3,
                        prior='gaussian')


def test_reconstructions_figure(tmp_path, tiny_runs):
  written = figures.make_figure('reconstructions', {'VAE': tiny_runs['vae'],
                                                    'VAE_Dis_l': tiny_runs['vae_disl']},
                                str(tmp_path), count=4, data_dir=None)
  _, numbers = check_written(written['reconstructions'], height=3 * 18)
  assert set(numbers['mean_squared_error']) == {'VAE', 'VAE_Dis_l'}
  assert all(0 < error < 4 for error in numbers['mean_squared_error'].values())


def test_attribute_figures(tmp_path, tiny_runs):
  written = figures.make_figure(
      'attributes', {'VAE/GAN': tiny_runs['vaegan']}, str(tmp_path), data_dir=None,
      attributes=['Eyeglasses', 'Smiling'], num_encode=200, num_test=6, strengths=[-1, 0, 1],
      interpolation_steps=4)
  _, numbers = check_written(written['attribute_vectors'], height=4 * 18)
  assert numbers['encoded_images'] == 200 and numbers['test_images'] == 6
  assert set(numbers['attributes']) == {'Eyeglasses', 'Smiling'}
  check_written(written['attribute_sweep'], height=2 * 18)
  _, interpolation = check_written(written['interpolation'], height=3 * 18)
  assert interpolation['pairs'] == [[0, 1], [2, 3], [4, 5]]


def test_paper_attributes_skip_those_never_drawn(tmp_path, tiny_runs):
  written = figures.make_figure(
      'attributes', {'VAE/GAN': tiny_runs['vaegan']}, str(tmp_path), data_dir=None,
      attributes=['paper'], num_encode=250, num_test=2, strengths=[1], interpolation_steps=2)
  numbers = json.load(open(written['attribute_vectors']['json']))
  assert 'Young' in numbers['skipped_constant']           # the synthetic faces never draw it
  assert 'Eyeglasses' in numbers['attributes']


def test_unknown_attribute_lists_the_available_ones(tmp_path, tiny_runs):
  with pytest.raises(ValueError, match=r"Unknown attribute\(s\) \['Sunglasses'\]; this "
                                       r'dataset has: 5_o_Clock_Shadow'):
    figures.make_figure('attributes', {'VAE/GAN': tiny_runs['vaegan']}, str(tmp_path),
                        data_dir=None, attributes=['Sunglasses'], num_encode=10, num_test=2,
                        strengths=[1], interpolation_steps=2)


def test_missing_run_lists_the_runs_that_exist(tmp_path, tiny_runs):
  missing = os.path.join(os.path.dirname(tiny_runs['vae']), 'vae_typo')
  with pytest.raises(runs.RunNotFound) as error:
    figures.make_figure('samples', {'VAE': missing}, str(tmp_path), count=2, seed=0)
  assert 'No checkpoint in' in str(error.value) and tiny_runs['vaegan'] in str(error.value)


def test_gan_has_no_reconstructions(tmp_path, tiny_runs):
  with pytest.raises(ValueError, match='gan run: it has no encoder'):
    figures.make_figure('reconstructions', {'GAN': tiny_runs['gan']}, str(tmp_path), count=2,
                        data_dir=None)


def test_attribute_that_never_varies_is_named(tmp_path, tiny_runs):
  with pytest.raises(ValueError, match=r"\['Young'\] never vary over the 200 encoded images"):
    figures.make_figure('attributes', {'VAE/GAN': tiny_runs['vaegan']}, str(tmp_path),
                        data_dir=None, attributes=['Smiling', 'Young'], num_encode=200,
                        num_test=2, strengths=[1], interpolation_steps=2)


def test_run_labels_parse():
  assert runs.parse_runs(['VAE/GAN=runs/a=b']) == {'VAE/GAN': 'runs/a=b'}
  with pytest.raises(ValueError, match='expected LABEL=WORKDIR'):
    runs.parse_runs(['runs/vaegan'])


def test_edit_success_by_hand():
  # Probabilities, coded 2 P - 1 as the predictor gives them (positive: present).
  before, added, subtracted = (2 * np.array(p) - 1 for p in (
      [0.2, 0.6, 0.4, 0.9], [0.7, 0.5, 0.45, 0.95],   # added: up, down, up, up
      [0.1, 0.3, 0.5, 0.2]))                          # subtracted: down, down, up, down
  present = np.array([False, True, False, True])
  result = attributes.edit_success(before, added, subtracted, present)
  assert result == {'moved_up_when_added': 0.75, 'moved_down_when_subtracted': 0.75,
                    'gained_when_absent': 0.5,        # of images 0 and 2, only 0 passes P 0.5
                    'lost_when_present': 1.0}         # images 1 and 3 both drop to P <= 0.5


def test_attribute_predictor_learns_and_round_trips(tmp_path, tiny_runs):
  data_dir = os.path.join(os.path.dirname(tiny_runs['vae']), 'data')
  open_split = lambda split: input_pipeline.open_prepared(data_dir, 'synthetic', 16, 3, split)
  predictor = attribute_predictor.train_predictor(open_split('train+validation'), steps=60,
                                                  batch_size=32)
  names = predictor.attribute_names
  assert predictor.trained[names.index('Eyeglasses')] and not predictor.trained[
      names.index('Young')]
  accuracies = attribute_predictor.accuracy(predictor, open_split('test'))
  assert accuracies['Young'] is None
  trained = [value for value in accuracies.values() if value is not None]
  assert len(trained) >= 8 and all(0 <= value <= 1 for value in trained)
  attribute_predictor.save(predictor, folders.Folder(str(tmp_path)).sub('predictor'),
                           {'test_accuracy': accuracies})
  loaded = attribute_predictor.load(str(tmp_path / 'predictor'))
  images = open_split('test').read(np.arange(5))['image']
  np.testing.assert_allclose(loaded.probabilities(images), predictor.probabilities(images),
                             rtol=1e-6)
  written = figures.make_figure(
      'attributes', {'VAE/GAN': tiny_runs['vaegan']}, str(tmp_path / 'figures'), data_dir=None,
      attributes=['Eyeglasses', 'Smiling'], num_encode=250, num_test=6,
      strengths=[1], interpolation_steps=2, predictor=str(tmp_path / 'predictor'))
  edits = json.load(open(written['attribute_vectors']['json']))['edit_success']
  assert set(edits) == {'Eyeglasses', 'Smiling'}
  assert all(0 <= edits['Smiling'][key] <= 1 for key in ('moved_up_when_added',
                                                        'moved_down_when_subtracted'))
  with pytest.raises(FileNotFoundError, match='No attribute predictor'):
    attribute_predictor.load(str(tmp_path / 'nowhere'))


# ---------------------------------------------------------------- conditional models (Fig. 6)
def test_similarity_row_by_hand():
  requested = np.array([[1.0, -1.0], [1.0, 1.0]])
  probabilities = np.array([[1.0, 0.5], [0.25, 1.0]])     # predicted 2P-1: [[1, 0], [-0.5, 1]]
  row = figures.similarity(requested, 2 * probabilities - 1, ['A', 'B'])
  # cosines: 1 / sqrt(2) and 0.5 / (sqrt(2) sqrt(1.25)); squared errors 0, 1, 2.25, 0
  expected_cosine = (1 / np.sqrt(2) + 0.5 / (np.sqrt(2) * np.sqrt(1.25))) / 2
  assert row['cosine_similarity'] == pytest.approx(expected_cosine)
  assert row['mean_squared_error'] == pytest.approx(0.8125)
  assert row['agreement'] == {'A': 0.5, 'B': 0.5}           # a 2P-1 of 0 agrees with neither


@pytest.fixture(scope='module')
def predictor_dir(tiny_runs, tmp_path_factory):
  data_dir = os.path.join(os.path.dirname(tiny_runs['vae']), 'data')
  split = input_pipeline.open_prepared(data_dir, 'synthetic', 16, 3, 'train+validation')
  out = str(tmp_path_factory.mktemp('predictor'))
  attribute_predictor.save(attribute_predictor.train_predictor(split, steps=20, batch_size=32),
                           folders.Folder(out), {})
  return out


def test_conditional_figures_and_similarity_table(tmp_path, tiny_runs, predictor_dir):
  labels = {'cVAE': 'vae_conditional', 'cGAN': 'gan_conditional',
            'cVAE/GAN': 'vaegan_conditional'}
  written = figures.make_figure(
      'conditional', {label: tiny_runs[name] for label, name in labels.items()}, str(tmp_path),
      count=5, seed=1, data_dir=None, predictor=predictor_dir, num_requests=20)
  image, numbers = check_written(written['conditional_samples'], height=4 * 18)
  assert image.size[0] > 5 * 17 + 1
  table = numbers['table']
  assert list(table) == ['test images', 'test images, y of another image', 'cVAE', 'cGAN',
                         'cVAE/GAN']                                   # the references first
  assert numbers['requests'] == 20
  conditioned = tiny.get_config('vae,conditional').model.condition_on
  judge = attribute_predictor.load(predictor_dir)
  varied = [name for name in conditioned if judge.trained[judge.attribute_names.index(name)]]
  assert numbers['judged_attributes'] == varied and len(varied) >= 2
  for row in table.values():
    assert -1 <= row['cosine_similarity'] <= 1 and 0 <= row['mean_squared_error'] <= 4
    assert set(row['agreement']) == set(numbers['judged_attributes'])
  pixels = np.asarray(image)[:, -(5 * 17 + 1):]
  assert not np.array_equal(pixels[18:36], pixels[36:54])        # different models, rows differ
  for label in labels:
    toggles, rows = check_written(written[f'conditional_toggles_{figures.slug(label)}'],
                                  height=(len(conditioned) + 1) * 18)
    assert rows['run'] == label and len(rows['rows']) == len(conditioned) + 1
    assert toggles.size[0] > 5 * 17 + 1
  assert figures.slug('cVAE/GAN') == 'cvae_gan'


def test_conditional_runs_change_their_images_with_y(tiny_runs):
  run = runs.load_run(tiny_runs['vaegan_conditional'])
  latents = np.zeros((2, run.config.model.latent_dim), np.float32)
  y = np.ones((2, len(run.condition_on)), np.float32)
  y[1, 0] = -1
  images = run.decode(latents, y)
  assert np.max(np.abs(images[0] - images[1])) > 1e-4
  with pytest.raises(ValueError, match='Decoder is conditioned on 4 attributes'):
    run.decode(latents)


def test_figures_refuse_runs_of_the_other_kind(tmp_path, tiny_runs, predictor_dir):
  with pytest.raises(ValueError, match='conditional ones go to --figure=conditional'):
    figures.make_figure('samples', {'cGAN': tiny_runs['gan_conditional']}, str(tmp_path),
                        count=2, seed=0)
  with pytest.raises(ValueError, match=r'takes conditional runs \(model.condition_on set\)'):
    figures.make_figure('conditional', {'GAN': tiny_runs['gan']}, str(tmp_path), count=2,
                        seed=0, data_dir=None, predictor=predictor_dir, num_requests=4)
  with pytest.raises(ValueError, match='needs --predictor'):
    figures.make_figure('conditional', {'cGAN': tiny_runs['gan_conditional']}, str(tmp_path),
                        count=2, seed=0, data_dir=None, predictor=None, num_requests=4)


def test_quality_figure_scores_each_run_in_the_domain_space(tmp_path, tiny_runs):
  written = figures.make_figure(
      'quality', {'VAE': tiny_runs['vae'], 'GAN': tiny_runs['gan'],
                  'cVAE/GAN': tiny_runs['vaegan_conditional']},
      str(tmp_path), data_dir=None, extractor='domain', extractor_steps=30, num_samples=24,
      seed=0)
  image, numbers = check_written(written['quality'], height=None)
  assert numbers['extractor'] == 'domain' and os.path.isdir(numbers['extractor_checkpoint'])
  assert numbers['num_samples'] == 24
  assert set(numbers['table']['VAE']) == {'samples', 'reconstructions'}
  assert set(numbers['table']['GAN']) == {'samples'}                  # no encoder
  for row in numbers['table'].values():
    for measured in row.values():
      assert measured['fid'] > 0 and 0 <= measured['precision'] <= 1
      assert np.isfinite(measured['checkerboard']) and measured['checkerboard'] > 0
      assert np.isfinite(measured['sharpness']) and measured['sharpness'] > 0
  # Two freshly initialised models draw different images, so their scores differ.
  assert numbers['table']['VAE']['samples']['fid'] != numbers['table']['GAN']['samples']['fid']


def test_counts_and_seeds_that_cannot_work_are_refused_by_the_command(tmp_path):
  """Issue 20, item 7: --count=0, --num_test=0 and --seed=-1 were accepted silently."""
  running = {flag: subprocess.Popen(
      [sys.executable, '-m', 'vaegan_jax.analysis.figures', '--figure=samples', f'--run=A={tmp_path}',
       f'--out={tmp_path}/figures', flag], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=dict(os.environ, PYTHONPATH=REPO))
      for flag in ('--count=0', '--num_test=0', '--seed=-1')}
  for flag, process in running.items():
    _, stderr = process.communicate(timeout=240)
    assert process.returncode != 0 and 'Traceback' not in stderr
    assert f'flag {flag}: ' in stderr and 'is not a' in stderr, stderr[-2000:]
  assert not os.path.exists(tmp_path / 'figures')


def test_the_command_hands_its_flags_to_the_figure(tiny_runs, tmp_path):
  """Every flag but --figure, --run and --out reaches the registered figure as an option."""
  done = subprocess.run(
      [sys.executable, '-m', 'vaegan_jax.analysis.figures', '--figure=samples',
       f'--run=VAE={tiny_runs["vae"]}', f'--run=GAN={tiny_runs["gan"]}', '--count=3', '--seed=5',
       f'--out={tmp_path}'], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
      timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  numbers = json.load(open(tmp_path / 'samples.json'))
  assert (numbers['count'], numbers['seed']) == (3, 5)
  assert set(numbers['runs']) == {'VAE', 'GAN'}
  assert numbers['runs']['VAE'] == {'workdir': tiny_runs['vae'], 'kind': 'vae', 'step': 0}
  assert f'samples: {tmp_path}/samples.png' in done.stdout
