"""Training input: shuffling per epoch, per-process shards that are disjoint and covering, flips,
determinism and exact resume, device placement."""
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from google.protobuf import json_format

import fake_celeba
from vaegan_jax.data import (dataset_layout, input_pipeline, prepare, prepared_documents,
                             preprocess, sources)
from vaegan_jax.data.dataset_layout import DataError

GLOBAL_BATCH = 16


@pytest.fixture(scope='module')
def train_split(tmp_path_factory):
  raw = str(tmp_path_factory.mktemp('raw'))
  data = str(tmp_path_factory.mktemp('data'))
  fake_celeba.write(raw, 48)
  prepare.prepare(sources.CelebAFiles(raw), data, preprocess.PreprocessSpec(resolution=8))
  return input_pipeline.open_prepared(data, 'celeba', 8, 3, 'train+validation')


def test_epochs_are_permutations_and_differ():
  n = 37
  positions = np.concatenate([input_pipeline.global_batch_indices(3, b, 8, n)
                              for b in range(10)])          # 80 positions: two full epochs
  first, second = positions[:n], positions[n:2 * n]
  assert sorted(first) == list(range(n)) and sorted(second) == list(range(n))
  assert not np.array_equal(first, second)
  again = input_pipeline.global_batch_indices(3, 4, 8, n)    # a pure function of (seed, b)
  np.testing.assert_array_equal(again, positions[32:40])
  assert not np.array_equal(input_pipeline.global_batch_indices(4, 0, 8, n), positions[:8])


@pytest.mark.parametrize('process_count', [2, 4])
def test_process_shards_are_disjoint_and_cover_the_global_batch(train_split, process_count):
  whole = input_pipeline.training_batches(train_split, seed=1, global_batch_size=GLOBAL_BATCH,
                                          local_devices=1, flip='example')
  shards = [input_pipeline.training_batches(
      train_split, seed=1, global_batch_size=GLOBAL_BATCH, local_devices=2, flip='example',
      process_index=index, process_count=process_count) for index in range(process_count)]
  mine = [input_pipeline.process_slice(GLOBAL_BATCH, index, process_count)
          for index in range(process_count)]
  covered = np.concatenate([np.arange(GLOBAL_BATCH)[part] for part in mine])
  np.testing.assert_array_equal(covered, np.arange(GLOBAL_BATCH))   # disjoint and covering
  for batch_index in range(6):
    reference = whole(batch_index)
    parts = [shard(batch_index) for shard in shards]
    for name in ('image', 'attributes', 'flip'):
      joined = np.concatenate([part[name].reshape(-1, *part[name].shape[2:]) for part in parts])
      np.testing.assert_array_equal(joined, reference[name][0])


def test_batch_contents_are_the_shuffled_records(train_split):
  load = input_pipeline.training_batches(train_split, seed=5, global_batch_size=GLOBAL_BATCH,
                                         local_devices=4)
  batch = load(2)
  assert batch['image'].shape == (4, 4, 8, 8, 3) and batch['attributes'].shape == (4, 4, 40)
  indices = input_pipeline.global_batch_indices(5, 2, GLOBAL_BATCH, len(train_split))
  expected = train_split.read(indices)
  np.testing.assert_array_equal(batch['image'].reshape(16, 8, 8, 3), expected['image'])
  assert not batch['flip'].any()


def test_flip_modes(train_split):
  def flips(mode):
    load = input_pipeline.training_batches(train_split, seed=0, global_batch_size=GLOBAL_BATCH,
                                           local_devices=1, flip=mode)
    return np.stack([load(b)['flip'].ravel() for b in range(20)])
  per_batch = flips('batch')
  assert all(row.all() or not row.any() for row in per_batch)
  assert 0 < per_batch[:, 0].sum() < 20
  per_example = flips('example')
  assert 0.3 < per_example.mean() < 0.7
  assert any(0 < row.sum() < GLOBAL_BATCH for row in per_example)


def test_model_input_scales_and_mirrors():
  image = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4, 3)).astype(np.uint8)
  image[0, 0, 0, 0] = [0, 255, 128]
  flip = np.array([[True, False, False], [False, True, True]])
  out = jax.device_get(input_pipeline.to_model_input(
      {'image': image, 'flip': flip, 'attributes': np.zeros((2, 3, 1), bool)}))['image']
  expected = np.where(flip[..., None, None, None], image[:, :, :, ::-1], image) / 127.5 - 1
  np.testing.assert_allclose(out, expected, atol=1e-6)
  np.testing.assert_allclose(out[0, 0, 0, -1], [-1.0, 1.0, 128 / 127.5 - 1], atol=1e-6)


def test_iterator_is_deterministic_and_resumes_exactly(train_split):
  devices = jax.local_devices()
  load = input_pipeline.training_batches(train_split, seed=9, global_batch_size=GLOBAL_BATCH,
                                         local_devices=len(devices), flip='example')

  def take(iterator, count):
    return [jax.device_get(next(iterator)) for _ in range(count)]
  uninterrupted = take(input_pipeline.TrainingIterator(load, devices), 8)
  first = input_pipeline.TrainingIterator(load, devices)
  take(first, 5)
  saved = first.get_state()
  assert saved == {'next_batch': 5}
  resumed = input_pipeline.TrainingIterator(load, devices)
  resumed.set_state(saved)
  for expected, got in zip(uninterrupted[5:], take(resumed, 3)):
    for name in expected:
      np.testing.assert_array_equal(expected[name], got[name])
  count = len(devices)  # 8 on the CPU run
  assert uninterrupted[0]['image'].shape == (count, GLOBAL_BATCH // count, 8, 8, 3)


def test_host_batches_without_devices(train_split):
  load = input_pipeline.training_batches(train_split, seed=2, global_batch_size=GLOBAL_BATCH,
                                         local_devices=2)
  iterator = input_pipeline.TrainingIterator(load, None, threads=1)
  iterator.set_state({'next_batch': 3})
  np.testing.assert_array_equal(next(iterator)['image'], load(3)['image'])
  assert iterator.get_state() == {'next_batch': 4}


def test_model_input_lands_on_each_device(train_split):
  devices = jax.local_devices()
  load = input_pipeline.training_batches(train_split, seed=2, global_batch_size=GLOBAL_BATCH,
                                         local_devices=len(devices))
  batch = next(input_pipeline.TrainingIterator(load, devices))['image']
  assert {shard.device for shard in batch.addressable_shards} == set(devices)
  per_device = GLOBAL_BATCH // len(devices)
  assert all(shard.data.shape == (1, per_device, 8, 8, 3) for shard in batch.addressable_shards)


def test_eval_batches_in_record_order(train_split):
  batches = list(input_pipeline.eval_batches(train_split, global_batch_size=8, local_devices=2,
                                             process_index=1, process_count=2))
  assert len(batches) == len(train_split) // 8
  np.testing.assert_array_equal(batches[1]['image'].reshape(4, 8, 8, 3),
                                train_split.read(np.arange(12, 16))['image'])


def test_a_split_smaller_than_one_batch_is_refused(train_split):
  with pytest.raises(DataError, match='fewer than one global batch'):
    input_pipeline.training_batches(train_split, seed=0, global_batch_size=64, local_devices=1)


def test_records_read_in_any_order(train_split):
  indices = np.array([40, 0, 17, 0, 33])
  records = train_split.records.read(indices)
  singles = [train_split.records.read([index])[0] for index in indices]
  assert records == singles and records[1] == records[3]
  with pytest.raises(IndexError):
    train_split.records.read([len(train_split)])


def test_conditions_are_the_named_columns_in_plus_minus_one():
  names = ('Bald', 'Male', 'Smiling')
  columns = input_pipeline.condition_columns(names, ('Smiling', 'Bald'))
  assert columns == (2, 0)
  attributes = np.array([[[True, False, False], [False, True, True]]])        # [D=1, B=2, A=3]
  np.testing.assert_array_equal(input_pipeline.conditions_of(attributes, columns),
                                [[[-1.0, 1.0], [1.0, -1.0]]])
  model_input = input_pipeline.to_model_input(
      {'image': np.zeros((1, 2, 4, 4, 3), np.uint8), 'attributes': attributes}, columns)
  np.testing.assert_array_equal(model_input['condition'], [[[-1.0, 1.0], [1.0, -1.0]]])
  assert 'condition' not in input_pipeline.to_model_input({'image': model_input['image']})
  assert input_pipeline.condition_columns(names, ()) == ()
  with pytest.raises(DataError, match=r"\['Young'\], which this dataset does not have. "
                                              r'Its attributes: Bald, Male, Smiling'):
    input_pipeline.condition_columns(names, ('Young',))


TEXT_CLASS = 'tensorflow_datasets.core.features.text_feature.Text'
# Each way a prepared folder's documents could name code or reach past the folder: every
# spelling of a feature class that tfds reads, and the fields of dataset_info.json that name code,
# a path or a count. (document, what replaces its text, what the message names)
TAMPERINGS = {
    'the class name': ('features.json', lambda text: text.replace(TEXT_CLASS,
                                                                  'planted_features.Text')),
    'python_class_name': ('features.json', lambda text: text.replace(
        '"text": {}', '"text": {}, "python_class_name": "planted_features.Text"')),
    'a type key': ('features.json', lambda text: json.dumps(
        {'type': 'planted_features.Evil', 'content': {}})),
    'this.Zen': ('features.json', lambda text: json.dumps({'type': 'this.Zen', 'content': {}})),
    'a nested json feature': ('features.json', lambda text: text.replace(
        '"text": {}', '"jsonFeature": {"json": "{\\"type\\": \\"planted_features.Text\\"}"}')),
    'another feature': ('features.json', lambda text: text.replace(
        '"name": {', '"extra": {"pythonClassName": "planted_features.Text"}, "name": {')),
    'the module': ('dataset_info.json', lambda text: text.replace(
        '"vaegan_jax.data.prepare"', '"planted_features"')),
    'a features key': ('dataset_info.json', lambda text: text.replace(
        '"name": "vaegan_images"', '"name": "vaegan_images", "features": {"pythonClassName": '
        '"planted_features.Text"}')),
    'the file template': ('dataset_info.json', lambda text: text.replace(
        '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}', '../../{SPLIT}')),
    'a shard length past any dataset': ('dataset_info.json', lambda text: re.sub(
        r'"shardLengths": \[\s*"\d+"', '"shardLengths": ["100000000000000000000"', text, 1)),
    'the attribute names': ('metadata.json', lambda text: text.replace('"Bald", ', '')),
}


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp('prepared')
  raw, data = str(root / 'raw'), str(root / 'data')
  fake_celeba.write(raw, 12)
  prepare.prepare(sources.CelebAFiles(raw), data, preprocess.PreprocessSpec(resolution=8))
  return data


@pytest.mark.parametrize('tampering', sorted(TAMPERINGS))
def test_a_prepared_folder_whose_documents_name_code_or_other_paths_is_refused_unimported(
    tmp_path, monkeypatch, capsys, prepared, tampering):
  """Issue 20, item 5 and issue 45, item 2: tfds imports the module of any class features.json
  names, by several spellings; the reader never hands the documents to tfds, and refuses any
  document that is not exactly what prepare writes."""
  data = str(tmp_path / 'data')
  shutil.copytree(prepared, data)
  marker = tmp_path / 'ran'
  (tmp_path / 'planted_features.py').write_text(f'open({str(marker)!r}, "w").close()\n')
  monkeypatch.syspath_prepend(str(tmp_path))          # as `python -m` puts the cwd first
  document, change = TAMPERINGS[tampering]
  path = os.path.join(dataset_layout.dataset_dir(data, 'celeba', 8, 3), document)
  text = open(path).read()
  assert change(text) != text
  open(path, 'w').write(change(text))
  with pytest.raises(DataError, match=f'{re.escape(path)} was not opened: .* prepare the '
                                      f'dataset again'):
    input_pipeline.open_prepared(data, 'celeba', 8, 3, 'train')
  assert not marker.exists() and 'Beautiful is better' not in capsys.readouterr().out
  open(path, 'w').write(text)                         # the untouched folder still opens
  assert len(input_pipeline.open_prepared(data, 'celeba', 8, 3, 'test')) > 0


def test_the_feature_document_is_what_tfds_writes_for_every_shape():
  """The reader's copy of features.json equals tfds's own, for grey and colour images and for
  binary, real and no attributes."""
  for shape, count, kind, dtype in (((8, 8, 3), 40, 'binary', np.bool_),
                                    ((32, 32, 1), 73, 'real', np.float32),
                                    ((16, 16, 3), 0, 'binary', np.bool_)):
    tensor = lambda shape, dtype: tfds.features.Tensor(shape=shape, dtype=dtype,
                                                       encoding=tfds.features.Encoding.BYTES)
    written = tfds.features.FeaturesDict({'image': tensor(shape, np.uint8),
                                          'attributes': tensor((count,), dtype),
                                          'name': tfds.features.Text()})
    assert json_format.MessageToDict(written.to_proto()) == (
        prepared_documents.features_document(shape, count, kind))
