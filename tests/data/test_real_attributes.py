"""Real-valued attributes (the paper's LFW protocol): a CSV and Kumar et al.'s LFW file through
prepare, read back as float32 and fed to a conditional model as they are; binary ones unchanged."""
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vaegan_jax.analysis import figures, runs
from vaegan_jax.configs import tiny
from vaegan_jax.data import input_pipeline, lfw, prepare, preprocess, sources
from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.metrics import attribute_predictor
from vaegan_jax.training import train
from vaegan_jax import folders


def read_all(data_dir, name, split, resolution=8):
  prepared = input_pipeline.open_prepared(str(data_dir), name, resolution, 3, split)
  return prepared, prepared.read(np.arange(len(prepared)))


def test_a_real_valued_csv_round_trips_through_prepare(tmp_path):
  root = tmp_path / 'pictures'
  root.mkdir()
  for index, colour in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
    Image.new('RGB', (12, 12), colour).save(root / f'{index}.png')
  csv = tmp_path / 'scores.csv'
  csv.write_text('path,Smiling,Age\n0.png,1.5,-0.25\n1.png,-2,3e-1\n2.png,1,0\n')
  source = sources.ImageFolder(str(root), str(csv), test_fraction=0.0)
  assert source.attribute_kind == 'real'
  prepare.prepare(source, str(tmp_path / 'data'), preprocess.PreprocessSpec('centre', 8))
  prepared, batch = read_all(tmp_path / 'data', 'pictures', 'train')
  assert prepared.attribute_kind == 'real' and batch['attributes'].dtype == np.float32
  np.testing.assert_array_equal(batch['attributes'], np.array(
      [[1.5, -0.25], [-2, 0.3], [1, 0]], np.float32))
  # A conditional model's y is the scores themselves, in config order.
  np.testing.assert_array_equal(input_pipeline.conditions_of(batch['attributes'], (1, 0)),
                                np.array([[-0.25, 1.5], [0.3, -2], [0, 1]], np.float32))


def test_binary_tables_stay_binary_and_a_bad_value_is_named(tmp_path):
  rows = [['a.png', '1', '-1'], ['b.png', '0', '1']]
  table = sources.parse_attribute_rows('t.csv', ['A', 'B'], rows)
  assert table['a.png'].dtype == np.bool_ and table['a.png'].tolist() == [True, False]
  np.testing.assert_array_equal(
      input_pipeline.conditions_of(jnp.asarray([[True, False]]), (0, 1)), [[1.0, -1.0]])
  with pytest.raises(DataError, match=r't.csv, data row 2 \(b.png\): expected 2 values '
                                      r'\(numbers\), got .0.5 high.'):
    sources.parse_attribute_rows('t.csv', ['A', 'B'], [['a.png', '1', '-1'],
                                                       ['b.png', '0.5', 'high']])
  with pytest.raises(DataError, match='expected 2 values of 1 or -1'):   # CelebA's are binary
    sources.parse_attribute_rows('list_attr_celeba.txt', ['A', 'B'], [['a.png', '0.5', '1']],
                                 real_valued=False)


# 73 names as Kumar et al.'s file has them: some with spaces.
LFW_NAMES = ['Male', 'Asian', 'White', 'Black', 'Baby', 'Middle Aged', 'Black Hair'] + [
    f'Attribute {index}' for index in range(66)]
PEOPLE = {'Aaron Eckhart': 1, 'Abba Eban': 2, 'Zico': 1}


def write_lfw(folder, with_people_file=True):
  """A tiny LFW in its own formats: 250x250 JPEGs in lfw/Name/Name_000N.jpg, the attribute
  file (tab-separated, a comment line, the header, one row per image; one image has no row)
  and View 1's test people."""
  rng = np.random.default_rng(0)
  scores = {}
  for person, count in PEOPLE.items():
    folder_name = person.replace(' ', '_')
    (folder / 'lfw' / folder_name).mkdir(parents=True)
    for number in range(1, count + 2):          # one image more than the file lists
      Image.fromarray(rng.integers(0, 256, (250, 250, 3), np.uint8)).save(
          folder / 'lfw' / folder_name / f'{folder_name}_{number:04d}.jpg')
      if number <= count:
        scores[(person, number)] = rng.normal(size=73).round(5)
  lines = ['# Kumar et al. attribute scores', '#\tperson\timagenum\t' + '\t'.join(LFW_NAMES)]
  lines += [f'{person}\t{number}\t' + '\t'.join(str(value) for value in values)
            for (person, number), values in scores.items()]
  (folder / lfw.ATTRIBUTE_FILE).write_text('\n'.join(lines) + '\n')
  if with_people_file:
    (folder / lfw.TEST_PEOPLE_FILE).write_text('1\nAbba_Eban\t2\n')
  return scores


def test_an_lfw_attribute_file_is_read_with_its_73_columns_and_split_by_person(tmp_path):
  scores = write_lfw(tmp_path)
  source = lfw.LFWFiles(str(tmp_path))
  assert len(source.attribute_names) == 73 and source.attribute_kind == 'real'
  assert source.attribute_names[5:7] == ('Middle_Aged', 'Black_Hair')
  assert [(example.key, example.split) for example in source.examples] == [
      ('Aaron_Eckhart/Aaron_Eckhart_0001.jpg', 'train'),
      ('Abba_Eban/Abba_Eban_0001.jpg', 'test'), ('Abba_Eban/Abba_Eban_0002.jpg', 'test'),
      ('Zico/Zico_0001.jpg', 'train')]                  # images without scores are left out
  np.testing.assert_allclose(source.examples[2].attributes, scores[('Abba Eban', 2)], rtol=1e-6)

  result = subprocess.run([sys.executable, '-m', 'vaegan_jax.data.prepare', f'--lfw_dir={tmp_path}',
                           f'--data_dir={tmp_path / "data"}', '--resolution=8'],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  prepared, batch = read_all(tmp_path / 'data', 'lfw', 'test')
  assert prepared.attribute_kind == 'real' and len(prepared.attribute_names) == 73
  np.testing.assert_allclose(batch['attributes'], [scores[('Abba Eban', 1)],
                                                   scores[('Abba Eban', 2)]], rtol=1e-6)
  image = np.asarray(Image.open(tmp_path / 'lfw' / 'Zico' / 'Zico_0001.jpg'))
  expected = preprocess.preprocess(Image.fromarray(image), preprocess.PreprocessSpec('lfw', 8))
  _, train = read_all(tmp_path / 'data', 'lfw', 'train')
  np.testing.assert_array_equal(train['image'][1], expected)   # the authors' 150x150 window


def test_lfw_crop_is_the_centred_150_square():
  pixels = np.arange(250 * 250 * 3).reshape(250, 250, 3)
  np.testing.assert_array_equal(preprocess.crop_square(pixels, 'lfw'), pixels[50:200, 50:200])
  with pytest.raises(ValueError, match='at least 150x150'):
    preprocess.crop_square(pixels[:100], 'lfw')


def test_lfw_problems_are_named(tmp_path):
  with pytest.raises(DataError, match='No LFW image folder'):
    lfw.LFWFiles(str(tmp_path))
  write_lfw(tmp_path, with_people_file=False)
  source = lfw.LFWFiles(str(tmp_path))                 # without View 1's list: split by hash
  by_person = {}
  for example in source.examples:
    by_person.setdefault(example.key.split('/')[0], set()).add(example.split)
  assert all(len(splits) == 1 for splits in by_person.values())
  text = (tmp_path / lfw.ATTRIBUTE_FILE).read_text().splitlines()
  (tmp_path / lfw.ATTRIBUTE_FILE).write_text('\n'.join(text[:2] + [text[2][:40]]) + '\n')
  with pytest.raises(DataError, match='line 3: expected a name, an image number and 73 scores'):
    lfw.LFWFiles(str(tmp_path))
  (tmp_path / lfw.ATTRIBUTE_FILE).write_text('\n'.join(text[2:]) + '\n')
  with pytest.raises(DataError, match='a data row before the header line'):
    lfw.LFWFiles(str(tmp_path))
  (tmp_path / lfw.ATTRIBUTE_FILE).write_text('\n'.join(text + ['Nobody\t1\t' + '\t'.join(
      ['0.5'] * 73)]) + '\n')
  with pytest.raises(DataError, match='lists 1 image.* lacks, e.g. Nobody/Nobody_0001.jpg'):
    lfw.LFWFiles(str(tmp_path))


def test_similarity_of_real_valued_attributes_by_hand():
  requested = np.array([[1.5, -0.5], [2.0, 1.0]])
  predicted = np.array([[1.0, -1.0], [2.0, 0.0]])
  row = figures.similarity(requested, predicted, ['A', 'B'])
  # cosines: (1.5 + 0.5) / (sqrt(2.5) sqrt(2)) and 4 / (sqrt(5) 2), both 2 / sqrt(5);
  # squared errors 0.25, 0.25, 0, 1 -> mean 0.375
  assert row['cosine_similarity'] == pytest.approx(2 / np.sqrt(5))
  assert row['mean_squared_error'] == pytest.approx(0.375)
  assert row['agreement'] == {'A': 1.0, 'B': 0.5}           # a prediction of 0 has no sign


def write_coloured_scores(folder, count, resolution, test_fraction):
  """`count` flat-coloured images whose two scores are written in their colour (red and blue,
  scaled to [-2, 2]), with their CSV, prepared as 'pictures' in folder/data."""
  root = folder / 'pictures'
  root.mkdir()
  rng = np.random.default_rng(0)
  lines = ['path,Redness,Blueness']
  for index in range(count):
    red, blue = rng.integers(0, 256, 2)
    Image.new('RGB', (resolution, resolution), (int(red), 90, int(blue))).save(
        root / f'{index}.png')
    lines.append(f'{index}.png,{red / 64 - 2:.4f},{blue / 64 - 2:.4f}')
  (folder / 'scores.csv').write_text('\n'.join(lines) + '\n')
  source = sources.ImageFolder(str(root), str(folder / 'scores.csv'), test_fraction=test_fraction)
  prepare.prepare(source, str(folder / 'data'), preprocess.PreprocessSpec('centre', resolution))
  return str(folder / 'data')


def test_a_regressor_learns_real_valued_scores_and_round_trips(tmp_path):
  write_coloured_scores(tmp_path, 48, 8, test_fraction=0.0)
  split, batch = read_all(tmp_path / 'data', 'pictures', 'train')
  predictor = attribute_predictor.train_predictor(split, steps=300, batch_size=16,
                                                  learning_rate=3e-3)
  assert predictor.kind == 'real' and predictor.trained.tolist() == [True, True]
  errors = attribute_predictor.test_scores(predictor, split)['test_errors']
  spread = batch['attributes'].std(axis=0)                  # what predicting the mean scores
  for index, name in enumerate(('Redness', 'Blueness')):
    assert errors[name]['rmse'] < 0.3 * spread[index], errors
    assert errors[name]['correlation'] > 0.9, errors
  attribute_predictor.save(predictor, folders.Folder(str(tmp_path)).sub('predictor'), {})
  loaded = attribute_predictor.load(str(tmp_path / 'predictor'))
  assert loaded.kind == 'real'
  np.testing.assert_allclose(loaded.predicted_attributes(batch['image']),
                             predictor.predicted_attributes(batch['image']), rtol=1e-6)
  with pytest.raises(ValueError, match='regresses real-valued attributes'):
    loaded.probabilities(batch['image'])


def test_a_conditional_model_takes_the_scores_and_a_regressor_judges_it(tmp_path):
  data_dir = write_coloured_scores(tmp_path, 64, 16, test_fraction=0.25)
  config = tiny.get_config('vaegan,conditional')
  config.data.update(name='pictures', synthetic_images=0, train_split='train',
                     eval_split='test', data_dir=data_dir)
  config.model.condition_on = ('Blueness', 'Redness')
  config.num_train_steps = 2
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  run = runs.load_run(workdir)
  test_split, test = read_all(data_dir, 'pictures', 'test', resolution=16)
  y = run.conditions(test['attributes'], test_split.attribute_names)
  np.testing.assert_array_equal(y, test['attributes'][:, ::-1])     # the scores, in config order

  train_split = input_pipeline.open_prepared(data_dir, 'pictures', 16, 3, 'train')
  predictor = attribute_predictor.train_predictor(train_split, steps=20, batch_size=16)
  attribute_predictor.save(predictor, folders.Folder(str(tmp_path)).sub('predictor'), {})
  written = figures.make_figure('conditional', {'cVAE/GAN': workdir}, str(tmp_path / 'figures'),
                                predictor=str(tmp_path / 'predictor'), num_requests=16, count=4,
                                seed=0)
  numbers = json.load(open(written['conditional_samples']['json']))
  assert numbers['coding'].startswith('requested y: the real-valued scores')
  reference = numbers['table']['test images']
  expected = figures.similarity(test['attributes'][:16, ::-1],
                                predictor.predicted_attributes(test['image'][:16])[:, ::-1],
                                ['Blueness', 'Redness'])
  assert reference['mean_squared_error'] == pytest.approx(expected['mean_squared_error'],
                                                          rel=1e-5)
  assert reference['cosine_similarity'] == pytest.approx(expected['cosine_similarity'], rel=1e-5)
  assert np.isfinite(numbers['table']['cVAE/GAN']['mean_squared_error'])
