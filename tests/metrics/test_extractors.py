"""extractors.py: the reference statistics of a split are made once however many runs ask for
them at the same time, through unique temporary names (issue 20, item 3)."""
import threading
import time

import numpy as np

import fake_celeba
from vaegan_jax.data import input_pipeline, prepare, preprocess, sources
from vaegan_jax.metrics import extractors, quality
from vaegan_jax import folders


def test_runs_asking_for_one_reference_at_once_make_it_once(tmp_path):
  raw, data = str(tmp_path / 'raw'), str(tmp_path / 'data')
  fake_celeba.write(raw, 12)
  prepare.prepare(sources.CelebAFiles(raw), data, preprocess.PreprocessSpec(resolution=8))
  split = input_pipeline.open_prepared(data, 'celeba', 8, 3, 'train')
  calls = []

  def features(images):
    calls.append(len(images))
    time.sleep(0.1)                 # long enough for the other runs to arrive meanwhile
    return images.reshape(len(images), -1)[:, :5].astype(np.float64)

  extractor = extractors.Extractor('counting', 'nowhere', features)
  folder = folders.Folder(str(tmp_path)).sub('cache')
  references = []
  runs = [threading.Thread(target=lambda: references.append(
      extractors.reference(extractor, split, folder, sample_size=4, batch_size=3)))
          for _ in range(3)]
  for run in runs:
    run.start()
  for run in runs:
    run.join()
  # One pass: the shape probe on one image, then the split in batches of 3.
  assert calls == [1] + [3] * (len(split) // 3) + ([len(split) % 3] if len(split) % 3 else [])
  expected = quality.statistics_of(features(split.read(np.arange(len(split)))['image']))
  for reference in references:
    np.testing.assert_allclose(reference.statistics.total, expected.total)
    assert reference.sample.shape == (4, 5)
  assert folder.list() == ['.reference_train_4.lock', 'reference_train_4.npz']
