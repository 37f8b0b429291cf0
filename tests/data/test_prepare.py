"""The prepare path, offline, on a fake CelebA in the real formats, a folder of images and a tfds
dataset; every bad-input message; nothing half-written."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import fake_celeba
from tiny_runs import REPO
from vaegan_jax import console
from vaegan_jax.configs import tiny
from vaegan_jax.data import dataset_layout, input_pipeline, prepare, preprocess, sources
from vaegan_jax.data.dataset_layout import DataError

SPEC = preprocess.PreprocessSpec(resolution=16)


def read_all(data_dir, name, split, resolution=16, channels=3):
  prepared = input_pipeline.open_prepared(data_dir, name, resolution, channels, split)
  return prepared, prepared.read(np.arange(len(prepared)))


@pytest.fixture(scope='module')
def celeba_raw(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('raw'))
  return folder, fake_celeba.write(folder, 20)


@pytest.mark.parametrize('extracted', [False, True])
def test_prepare_celeba_splits_pixels_and_attributes(tmp_path, extracted):
  raw = str(tmp_path / 'raw')
  names = fake_celeba.write(raw, 20, extracted=extracted)
  summary = prepare.prepare(sources.CelebAFiles(raw), str(tmp_path / 'data'), SPEC, workers=2)
  assert summary.examples == {'train': 14, 'validation': 3, 'test': 3}
  assert summary.skipped_corrupt == [] and summary.bytes > 0
  offset = 0
  for split, count in summary.examples.items():
    prepared, batch = read_all(str(tmp_path / 'data'), 'celeba', split)
    assert prepared.attribute_names == tuple(fake_celeba.ATTRIBUTES)
    assert batch['image'].shape == (count, 16, 16, 3)
    for row in range(count):                # records keep the source order
      index = offset + row
      decoded = Image.open(os.path.join(raw, 'img_align_celeba', names[index])) if extracted \
          else sources.ImageLimits().decode(fake_celeba.jpeg_bytes(fake_celeba.image_pixels(index)))
      np.testing.assert_array_equal(batch['image'][row], preprocess.preprocess(decoded, SPEC))
      np.testing.assert_array_equal(batch['attributes'][row], fake_celeba.attributes_of(index))
    offset += count


def test_train_plus_validation_reads_both(tmp_path, celeba_raw):
  prepare.prepare(sources.CelebAFiles(celeba_raw[0]), str(tmp_path), SPEC, workers=1)
  both, batch = read_all(str(tmp_path), 'celeba', 'train+validation')
  _, validation = read_all(str(tmp_path), 'celeba', 'validation')
  assert len(both) == 17
  np.testing.assert_array_equal(batch['image'][14:], validation['image'])


def test_prepare_again_is_a_no_op(tmp_path, celeba_raw):
  data = str(tmp_path)
  first = prepare.prepare(sources.CelebAFiles(celeba_raw[0]), data, SPEC)
  stamp = os.path.getmtime(os.path.join(first.path, 'dataset_info.json'))
  second = prepare.prepare(sources.CelebAFiles(celeba_raw[0]), data, SPEC)
  assert second.examples == first.examples
  assert os.path.getmtime(os.path.join(first.path, 'dataset_info.json')) == stamp


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('missing, message', [
    ('img_align_celeba.zip', 'Missing the images: expected one of img_align_celeba.zip'),
    ('list_attr_celeba.txt', 'Missing the attribute file: expected one of list_attr_celeba.txt'),
    ('list_eval_partition.txt', 'Missing the partition file'),
])
def test_missing_file_is_named(tmp_path, celeba_raw, missing, message):
  raw = str(tmp_path / 'raw')
  shutil.copytree(celeba_raw[0], raw)
  os.remove(os.path.join(raw, missing))
  with pytest.raises(DataError, match=message) as error:
    sources.CelebAFiles(raw)
  assert raw in str(error.value)


DRIVE_PAGE = ('<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>'
              '<body>Too many users have viewed or downloaded this file recently.</body></html>')


@pytest.mark.parametrize('victim', ['img_align_celeba.zip', 'list_attr_celeba.txt',
                                    'list_eval_partition.txt'])
def test_google_drive_page_is_recognised(tmp_path, celeba_raw, victim):
  raw = str(tmp_path / 'raw')
  shutil.copytree(celeba_raw[0], raw)
  with open(os.path.join(raw, victim), 'w') as file:
    file.write(DRIVE_PAGE)
  with pytest.raises(DataError, match='Google Drive - Quota exceeded') as error:
    sources.CelebAFiles(raw)
  assert victim in str(error.value) and 'download quota' in str(error.value)


def test_truncated_zip_is_reported(tmp_path, celeba_raw):
  raw = str(tmp_path / 'raw')
  shutil.copytree(celeba_raw[0], raw)
  path = os.path.join(raw, 'img_align_celeba.zip')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  with pytest.raises(DataError, match='not a readable zip'):
    sources.CelebAFiles(raw)


def rewrite_line(path, line_number, edit):
  lines = open(path).read().splitlines(keepends=True)
  lines[line_number] = edit(lines[line_number])
  open(path, 'w').write(''.join(lines))


def test_attribute_rows_not_matching_images_name_the_first(tmp_path, celeba_raw):
  raw = str(tmp_path / 'raw')
  shutil.copytree(celeba_raw[0], raw)
  rewrite_line(os.path.join(raw, 'list_attr_celeba.txt'), 2 + 4,
               lambda line: line.replace('000005.jpg', '100005.jpg'))
  with pytest.raises(DataError, match='000005.jpg has an image but is not listed'):
    sources.CelebAFiles(raw)


def test_partition_not_matching_images_names_the_first(tmp_path, celeba_raw):
  raw = str(tmp_path / 'raw')
  shutil.copytree(celeba_raw[0], raw)
  with open(os.path.join(raw, 'list_eval_partition.txt'), 'a') as file:
    file.write('000021.jpg 2\n')
  with pytest.raises(DataError, match='000021.jpg is listed but has no image'):
    sources.CelebAFiles(raw)


def test_malformed_attribute_row_and_count(tmp_path, celeba_raw):
  raw = str(tmp_path / 'raw')
  shutil.copytree(celeba_raw[0], raw)
  path = os.path.join(raw, 'list_attr_celeba.txt')
  rewrite_line(path, 3, lambda line: line.rstrip() + ' 1\n')
  with pytest.raises(DataError, match=r'data row 2 \(000002.jpg\): expected 40 values'):
    sources.CelebAFiles(raw)
  rewrite_line(path, 0, lambda line: '25\n')
  with pytest.raises(DataError, match='says it has 25 rows but has 20'):
    sources.CelebAFiles(raw)


def no_dataset_left(data_dir):
  """Nothing under data_dir reads as a prepared dataset, and no tfds leftovers."""
  with pytest.raises(DataError, match='No prepared dataset celeba_16'):
    input_pipeline.open_prepared(data_dir, 'celeba', 16, 3, 'train')
  folder = os.path.join(data_dir, dataset_layout.BUILDER_NAME, 'celeba_16')
  return not os.path.isdir(folder) or not [name for name in os.listdir(folder)
                                            if name.startswith('incomplete')]


def test_corrupt_images_stop_and_are_all_listed(tmp_path):
  raw = str(tmp_path / 'raw')
  fake_celeba.write(raw, 20, corrupt=(2, 18))       # one in train, one in test
  with pytest.raises(DataError) as error:
    prepare.prepare(sources.CelebAFiles(raw), str(tmp_path / 'data'), SPEC)
  message = str(error.value)
  assert '2 corrupt image(s)' in message and '000003.jpg' in message and '000019.jpg' in message
  assert '--skip_corrupt' in message
  assert no_dataset_left(str(tmp_path / 'data'))


def test_skip_corrupt_leaves_them_out_and_counts_them(tmp_path):
  raw = str(tmp_path / 'raw')
  fake_celeba.write(raw, 20, corrupt=(2, 18))
  summary = prepare.prepare(sources.CelebAFiles(raw), str(tmp_path / 'data'), SPEC,
                            skip_corrupt=True)
  assert summary.examples == {'train': 13, 'validation': 3, 'test': 2}
  assert [entry.split()[0] for entry in summary.skipped_corrupt] == ['000003.jpg', '000019.jpg']
  assert '2 corrupt skipped' in str(summary)
  _, train = read_all(str(tmp_path / 'data'), 'celeba', 'train')
  expected = preprocess.preprocess(sources.ImageLimits().decode(fake_celeba.jpeg_bytes(
      fake_celeba.image_pixels(3))), SPEC)
  np.testing.assert_array_equal(train['image'][2], expected)     # 000004 moved up


class Interrupt(Exception):
  pass


def test_interrupted_prepare_leaves_nothing_that_reads_as_a_dataset(tmp_path, celeba_raw,
                                                                    monkeypatch):
  source = sources.CelebAFiles(celeba_raw[0])
  calls = []

  def dying_load(example):
    calls.append(example)
    if len(calls) == 16:                  # in the middle of the validation split
      raise Interrupt()
    return original_load(example)
  original_load = source.load
  monkeypatch.setattr(source, 'load', dying_load)
  with pytest.raises(Interrupt):
    prepare.prepare(source, str(tmp_path), SPEC, workers=1)
  assert no_dataset_left(str(tmp_path))


KILL_SCRIPT = '''
import sys
import tempfile
from vaegan_jax.data import prepare, preprocess, sources
import fake_celeba
source = sources.CelebAFiles(sys.argv[1])
load = source.load
def slow_load(example):
  import time; time.sleep(0.05)
  return load(example)
source.load = slow_load
prepare.prepare(source, sys.argv[2], preprocess.PreprocessSpec(resolution=16), workers=1)
'''


def test_killed_prepare_is_ignored_then_cleaned(tmp_path, celeba_raw):
  data = str(tmp_path / 'data')
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.join(REPO, 'tests'), REPO, os.environ.get('PYTHONPATH', '')]))
  process = subprocess.Popen([sys.executable, '-c', KILL_SCRIPT, celeba_raw[0], data], env=env)
  parent = os.path.join(data, dataset_layout.BUILDER_NAME, 'celeba_16')
  deadline = time.time() + 120
  while time.time() < deadline and not (
      os.path.isdir(parent) and any(name.startswith('incomplete') for name in os.listdir(parent))):
    time.sleep(0.05)
  time.sleep(0.3)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert any(name.startswith('incomplete') for name in os.listdir(parent))
  with pytest.raises(DataError, match='No prepared dataset'):
    input_pipeline.open_prepared(data, 'celeba', 16, 3, 'train')
  summary = prepare.prepare(sources.CelebAFiles(celeba_raw[0]), data, SPEC)
  assert summary.examples['train'] == 14
  assert not [name for name in os.listdir(parent) if name.startswith('incomplete')]


def test_missing_prepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(DataError, match='vaegan-prepare --raw_dir=CELEBA_FILES'):
    input_pipeline.open_prepared(str(tmp_path), 'celeba', 64, 3, 'train')


def test_unknown_split_lists_the_available_ones(tmp_path, celeba_raw):
  prepare.prepare(sources.CelebAFiles(celeba_raw[0]), str(tmp_path), SPEC)
  with pytest.raises(DataError, match='has no split holdout; it has train, validation'):
    input_pipeline.open_prepared(str(tmp_path), 'celeba', 16, 3, 'train+holdout')


def test_command_line_reports_bad_input_and_prepares(tmp_path, celeba_raw):
  command = [sys.executable, '-m', 'vaegan_jax.data.prepare', f'--data_dir={tmp_path}/data',
             '--resolution=16']
  failed = subprocess.run(command + [f'--raw_dir={tmp_path}/nowhere'], capture_output=True,
                          text=True)
  assert failed.returncode == 1
  assert 'vaegan-prepare: raw_dir' in failed.stderr and 'is not a folder' in failed.stderr
  done = subprocess.run(command + [f'--raw_dir={celeba_raw[0]}', '--name=fake'],
                        capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert 'Prepared 20 images (train 14, validation 3, test 3)' in done.stdout
  assert os.path.exists(dataset_layout.dataset_dir(f'{tmp_path}/data', 'fake', 16, 3))
  # Our summary alone: none of tfds's bars, its "downloaded and prepared" or its INFO lines.
  assert done.stdout.strip().splitlines() == [done.stdout.strip().splitlines()[-1]]
  for library_output in ('downloaded and prepared', 'Generating', 'Shuffling', 'Done writing'):
    assert library_output not in done.stdout + done.stderr


def test_a_prepare_leaves_no_folder_in_the_temporary_folder(tmp_path, celeba_raw):
  """tfds's bucket lookup left an empty tmpXXXXXXXXtfds folder per prepare (72 after a run of
  the tests); our builder never looks its datasets up there."""
  leftovers = lambda: {name for name in os.listdir(tempfile.gettempdir())
                       if name.endswith('tfds')}
  before = leftovers()
  prepare.prepare(sources.CelebAFiles(celeba_raw[0]), str(tmp_path / 'data'), SPEC)
  assert leftovers() - before == set()


def test_the_progress_line_counts_rate_and_time_left(monkeypatch):
  clock = iter([100.0, 102.0, 102.0])
  monkeypatch.setattr(console.time, 'perf_counter', lambda: next(clock))
  progress = console.Progress('Preparing celeba_64', total=1000, every_s=1e9)
  progress.advance(250)                   # 250 images in 2 s: 125 images/s, 750 left: 6 s
  assert progress.line() == 'Preparing celeba_64: 250/1,000 images (125 images/s, ETA 6 s)'


# ---------------------------------------------------------------- other sources
def test_image_folder_with_attributes(tmp_path):
  root = tmp_path / 'pictures'
  (root / 'nested').mkdir(parents=True)
  Image.new('L', (40, 30), 90).save(root / 'grey.png')
  Image.new('RGBA', (25, 50), (200, 10, 10, 255)).save(root / 'nested' / 'red.png')
  Image.new('RGB', (64, 64), (0, 0, 250)).save(root / 'blue.jpg', quality=100)
  (root / 'notes.txt').write_text('not an image')
  csv = tmp_path / 'attributes.csv'
  csv.write_text('path,Smiling,Red\nblue.jpg,1,-1\ngrey.png,-1,-1\nnested/red.png,1,1\n')
  source = sources.ImageFolder(str(root), str(csv), test_fraction=0.0)
  assert [example.key for example in source.examples] == ['blue.jpg', 'grey.png',
                                                          'nested/red.png']
  spec = preprocess.PreprocessSpec(crop='centre', resolution=8)
  summary = prepare.prepare(source, str(tmp_path / 'data'), spec)
  assert summary.examples == {'train': 3}
  prepared, batch = read_all(str(tmp_path / 'data'), 'pictures', 'train', resolution=8)
  assert prepared.attribute_names == ('Smiling', 'Red')
  np.testing.assert_array_equal(batch['attributes'], [[1, 0], [0, 0], [1, 1]])
  assert np.all(np.abs(batch['image'][1].astype(int) - 90) <= 0)        # grey -> 3 channels
  assert np.all(batch['image'][2] == [200, 10, 10])


def test_image_folder_csv_mismatch_and_empty_folder(tmp_path):
  root = tmp_path / 'pictures'
  root.mkdir()
  with pytest.raises(DataError, match='No images'):
    sources.ImageFolder(str(root))
  Image.new('RGB', (8, 8)).save(root / 'a.png')
  csv = tmp_path / 'attributes.csv'
  csv.write_text('path,Smiling\nb.png,1\n')
  with pytest.raises(DataError, match='a.png has an image but is not listed'):
    sources.ImageFolder(str(root), str(csv))


def test_test_split_is_stable_under_additions():
  keys = [f'image_{index}.png' for index in range(2000)]
  splits = {key: sources.test_split(key, 0.1) for key in keys}
  assert 150 < sum(split == 'test' for split in splits.values()) < 250
  assert all(sources.test_split(key, 0.1) == splits[key] for key in keys[:100])


class FakeImages(tfds.core.GeneratorBasedBuilder):
  """A tfds image dataset with CelebA-style boolean attributes, written without TensorFlow."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True,
                                 features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(20, 12, 3)),
        'attributes': tfds.features.FeaturesDict({'Smiling': np.bool_, 'Bald': np.bool_})}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(6), 'test': self._generate_examples(2)}

  def _generate_examples(self, count):
    for index in range(count):
      pixels = np.full((20, 12, 3), 30 * index, np.uint8)
      yield index, {'image': Image.fromarray(pixels),
                    'attributes': {'Smiling': index % 2 == 0, 'Bald': index == 1}}


def test_tfds_dataset_by_name(tmp_path):
  FakeImages(data_dir=str(tmp_path / 'tfds'), file_format='array_record').download_and_prepare()
  source = sources.TfdsDataset('fake_images', str(tmp_path / 'tfds'))
  assert source.attribute_names == ('Bald', 'Smiling') and source.crop == 'centre'
  spec = preprocess.PreprocessSpec(crop='centre', resolution=4)
  summary = prepare.prepare(source, str(tmp_path / 'data'), spec)
  assert summary.examples == {'train': 6, 'test': 2}
  _, batch = read_all(str(tmp_path / 'data'), 'fake_images', 'train', resolution=4)
  np.testing.assert_array_equal(batch['image'][:, 0, 0, 0], [0, 30, 60, 90, 120, 150])
  np.testing.assert_array_equal(batch['attributes'][:2], [[0, 1], [1, 0]])


def test_tfds_dataset_not_prepared_says_what_to_do(tmp_path):
  with pytest.raises(DataError, match='array_record'):
    sources.TfdsDataset('fake_images', str(tmp_path / 'empty'))


def test_failed_tfds_download_points_to_the_raw_files(tmp_path, monkeypatch):
  class QuotaBuilder:
    def download_and_prepare(self):
      raise OSError('NonMatchingChecksumError: artifact is an HTML page (quota exceeded)')
  monkeypatch.setattr(tfds, 'builder', lambda *args, **kwargs: QuotaBuilder())
  with pytest.raises(DataError) as error:
    prepare.download_tfds('celeb_a', str(tmp_path))
  message = str(error.value)
  assert 'quota exceeded' in message and '--raw_dir' in message and "'celeb_a'" in message


# ---------------------------------------------------------------- runs side by side (issue 20)
ENSURE_SCRIPT = '''
import sys
import tempfile
from absl import logging
from vaegan_jax.configs import tiny
from vaegan_jax.data import prepare
logging.set_verbosity(logging.INFO)
data = tiny.get_config().data
data.data_dir = sys.argv[1]
prepare.ensure_prepared(data, 16, 3)
print('done', flush=True)
'''


def test_two_runs_preparing_one_data_dir_at_once_both_finish_with_one_dataset(tmp_path):
  """Issue 20, item 3: the second run deleted the first's incomplete.* folder as stale, and
  the first died. Now the second waits for the first's lock, then reuses its result."""
  data = str(tmp_path / 'data')
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO, os.environ.get('PYTHONPATH', '')]))
  runs = [subprocess.Popen([sys.executable, '-c', ENSURE_SCRIPT, data], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  outputs = [run.communicate(timeout=300) for run in runs]
  for run, (stdout, stderr) in zip(runs, outputs):
    assert run.returncode == 0 and stdout.strip().endswith('done'), stderr[-3000:]
  logs = ''.join(stderr for _, stderr in outputs)
  assert logs.count('Drawing 300 synthetic faces') == 1
  assert logs.count('downloaded and prepared') <= 1 and 'Removing' not in logs
  assert 'Waiting for' in logs
  prepared, batch = read_all(data, 'synthetic', 'train')
  assert len(prepared) == len(batch['image']) > 200


def test_an_incomplete_folder_is_left_alone_while_its_writer_holds_the_lock(tmp_path,
                                                                            celeba_raw):
  data = str(tmp_path / 'data')
  parent = os.path.dirname(dataset_layout.dataset_dir(data, 'celeba', 16, 3))
  os.makedirs(os.path.join(parent, 'incomplete.live_1.0.0'))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO, os.environ.get('PYTHONPATH', '')]))
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\nfrom vaegan_jax import folders\n'
       'with folders.FileLock(folders.Folder(sys.argv[1]), ".prepare.lock", wait=False):\n'
       '  print("held", flush=True)\n  time.sleep(600)', parent],
      stdout=subprocess.PIPE, text=True, env=env)
  try:
    assert holder.stdout.readline().strip() == 'held'
    done = []
    worker = threading.Thread(target=lambda: done.append(prepare.prepare(
        sources.CelebAFiles(celeba_raw[0]), data, SPEC)))
    worker.start()
    time.sleep(1.5)
    assert worker.is_alive() and os.path.isdir(os.path.join(parent, 'incomplete.live_1.0.0'))
  finally:
    holder.kill()
    holder.wait()
  worker.join(timeout=120)
  assert done and done[0].examples['train'] == 14
  assert not [name for name in os.listdir(parent) if name.startswith('incomplete')]


@pytest.mark.parametrize('flag, message', [
    ('--resolution=0', r'flag --resolution=0: 0 is not an integer in the range \[4, 1024\]'),
    ('--resolution=99999999999999999999', 'is not an integer in the range'),
    ('--workers=-1', r'flag --workers=-1: -1 is not an integer in the range \[0, 1024\]'),
    ('--test_fraction=1.5', 'flag --test_fraction=1.5: must lie strictly between 0 and 1'),
    ('--augmented_copies=-2', 'flag --augmented_copies=-2: -2 is not an integer in the range'),
    ('--augmented_copies=1e20', "flag --augmented_copies=1e20: invalid literal for int"),
    ('--max_image_bytes=1e20', "flag --max_image_bytes=1e20: invalid literal for int"),
    ('--max_image_pixels=0', 'flag --max_image_pixels=0: 0 is not an integer in the range'),
])
def test_bad_prepare_flags_are_one_message(tmp_path, celeba_raw, flag, message):
  result = subprocess.run([sys.executable, '-m', 'vaegan_jax.data.prepare',
                           f'--raw_dir={celeba_raw[0]}', f'--data_dir={tmp_path}', flag],
                          capture_output=True, text=True)
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert re.search(message, result.stderr), result.stderr
  assert not os.path.exists(tmp_path / 'vaegan_images')


@pytest.mark.parametrize('name', ['../../x', 'a/b', '.hidden', 'x' * 101])
def test_a_dataset_name_stays_one_folder_inside_the_data_dir(tmp_path, celeba_raw, name):
  data = tmp_path / 'a' / 'b' / 'data'
  result = subprocess.run([sys.executable, '-m', 'vaegan_jax.data.prepare',
                           f'--raw_dir={celeba_raw[0]}', f'--data_dir={data}', f'--name={name}'],
                          capture_output=True, text=True)
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f'vaegan-prepare: {name!r} cannot name a dataset: use at most 100 letters, digits, "_", '
      f'"-" and "." (not first), so that it stays one folder inside the data_dir.')
  assert not list(tmp_path.rglob('*'))        # ../../x wrote a/x_64 before


def test_an_empty_data_dir_is_refused_before_anything_is_drawn(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  data = tiny.get_config().data
  data.data_dir = ''
  with pytest.raises(DataError, match='data_dir is empty; give a folder with '
                                      '--config.data.data_dir'):
    prepare.ensure_prepared(data, 16, 3)
  assert os.listdir(tmp_path) == []                # drew into ./raw/ before


def test_an_unwritable_data_dir_is_named(tmp_path):
  raw = str(tmp_path / 'raw')
  fake_celeba.write(raw, 20)
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(DataError, match=f'Cannot write to data_dir {blocker}/data'):
    prepare.prepare(sources.CelebAFiles(raw), str(blocker / 'data'), SPEC)
