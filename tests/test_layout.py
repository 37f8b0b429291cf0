"""The package's layout (issue 23): a run and a prepared dataset written by the code before the
move into subpackages (vaegan_jax/train.py, vaegan_jax/prepare.py, ...) still read after it,
and the package's top holds only the bottom modules."""
import os
import pkgutil
import shutil

import numpy as np

import vaegan_jax
from tiny_runs import REPO
from vaegan_jax.analysis import runs
from vaegan_jax.data import input_pipeline

BEFORE = os.path.join(REPO, 'tests', 'fixtures', 'written_before_the_move')


def test_a_run_and_a_dataset_written_before_the_move_read_after_it(tmp_path):
  shutil.copytree(BEFORE, tmp_path / 'before')           # reading must not touch the fixture
  run = runs.load_run(str(tmp_path / 'before' / 'run'))
  assert run.step == 3 and run.config.model.resolution == 16
  samples = run.decode(np.zeros((2, run.config.model.latent_dim), np.float32))
  assert samples.shape == (2, 16, 16, 3) and np.all(np.isfinite(samples))
  split = input_pipeline.open_prepared(str(tmp_path / 'before' / 'data'), 'celeba', 8, 3, 'train')
  images = split.read(np.arange(len(split)))['image']
  assert images.shape == (len(split), 8, 8, 3) and images.dtype == np.uint8 and images.std() > 0


def test_the_top_of_the_package_holds_at_most_six_modules_and_each_subpackage_twelve():
  top = [module.name for module in pkgutil.iter_modules(vaegan_jax.__path__)
         if not module.ispkg]
  assert len(top) <= 6, top
  for package in pkgutil.iter_modules(vaegan_jax.__path__):
    if package.ispkg:
      inside = [module for module in pkgutil.iter_modules(
          [os.path.join(vaegan_jax.__path__[0], package.name)]) if not module.ispkg]
      assert len(inside) <= 12, (package.name, inside)
