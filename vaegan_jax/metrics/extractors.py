"""Feature spaces for the sample-quality metrics of quality.py, and the cached statistics of a
dataset split in them.

'inception': the standard FID feature space, the pool3 features of pytorch-fid's Inception-v3
  (inception.py), from its weights file. Its numbers are comparable with other papers'.
'domain': the hidden layer of an attribute predictor (attribute_predictor.py) trained on the
  dataset's own attribute labels. It needs no download, so it runs anywhere: on the synthetic
  demo, in CI, on any dataset with attributes. Its numbers are reported as `fid_domain`,
  `kid_domain`, ... with the predictor's folder named beside them, so that no one takes them for
  the standard Inception FID: they compare models on one dataset, not across papers.

An extractor and a split's reference statistics are made once and cached next to the prepared
dataset, in DATA_DIR/vaegan_extractors/NAME_R/EXTRACTOR/, keyed by extractor, dataset, split and
resolution; each file is written under a unique temporary name and renamed when complete, and
one process at a time makes each (folders.make_once), so runs started together make it once.
Nothing there is written through a link (folders.Folder).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np
from absl import logging

from vaegan_jax import console, files, folders
from vaegan_jax.data import input_pipeline
from vaegan_jax.data.dataset_layout import config_name
from vaegan_jax.metrics import attribute_predictor, inception, quality

DOMAIN_PREDICTOR_STEPS = 1500


@dataclasses.dataclass(frozen=True)
class Extractor:
  """A feature space: images [N, R, R, C] in [-1, 1] (or uint8) -> features [N, D]."""
  name: str
  checkpoint: str                         # the folder or file the features come from
  features: Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Reference:
  """A split's statistics in one feature space, and a fixed sample of its features for KID
  and precision and recall."""
  statistics: quality.FeatureStatistics
  sample: np.ndarray                      # [n, D]


def cache_dir(data_dir: str, dataset: str, resolution: int, channels: int, extractor: str
              ) -> folders.Folder:
  """DATA_DIR/vaegan_extractors/NAME_R/EXTRACTOR, made if needed, none of it through a link."""
  return folders.Folder(data_dir, 'data_dir', '--config.data.data_dir').sub(
      f'vaegan_extractors/{config_name(dataset, resolution, channels)}/{extractor}')


def domain_extractor(train_split: input_pipeline.PreparedSplit, folder: folders.Folder,
                     steps: int = DOMAIN_PREDICTOR_STEPS) -> Extractor | None:
  """The domain extractor of a dataset, trained on `train_split` once into `folder`; None when
  the dataset has no attribute that varies (nothing to learn features from). Runs started side
  by side train it once: the others wait for the first's, then read it."""
  done = lambda: folder.exists('predictor.json')
  if not done():
    if not attribute_predictor.learnable(train_split).any():
      return None
    folders.make_once(folder, 'predictor', done,
                      lambda: _train_domain_predictor(train_split, folder, steps),
                      f'the domain extractor {folder.path()}')
  predictor = attribute_predictor.load(folder.path())
  return Extractor('domain', folder.path(), predictor.hidden_features)


def _train_domain_predictor(train_split: input_pipeline.PreparedSplit, folder: folders.Folder,
                            steps: int) -> None:
  logging.info('Training the domain feature extractor (an attribute predictor, %d steps) into '
               '%s, once.', steps, folder.path())
  predictor = attribute_predictor.train_predictor(train_split, steps=steps)
  attribute_predictor.save(predictor, folder, {'steps': steps, 'trained_on': train_split.path})


def inception_extractor(weights: str | None = None, sha256: str | None = None) -> Extractor:
  """pytorch-fid's Inception pool3 features, from `weights` (or the cached download), checked
  against `sha256` (or pytorch-fid's own digest)."""
  path, params = inception.load_params(weights or None, sha256 or None)
  return Extractor('inception', path, lambda images: inception.features(params, images))


def reference(extractor: Extractor, split: input_pipeline.PreparedSplit,
              folder: folders.Folder, sample_size: int, batch_size: int = 500) -> Reference:
  """The statistics of every image of `split` and the features of its first `sample_size`
  images, made once and cached in `folder` (runs side by side wait for the first's)."""
  name = f'reference_{split.split.replace("+", "_")}_{sample_size}'
  path = folder.path(f'{name}.npz')
  folders.make_once(folder, name, lambda: folder.exists(f'{name}.npz'),
                    lambda: _write_reference(extractor, split, folder, name, sample_size,
                                             batch_size),
                    f'the reference statistics {path}')
  features = quality.MAX_FEATURES             # a cache in a shared data_dir is read as hostile
  data = files.read_npz(path, 8 * features * (features + sample_size + 1) + 4096)
  return Reference(quality.FeatureStatistics(int(data['count']), data['total'], data['outer']),
                   data['sample'])


def _write_reference(extractor: Extractor, split: input_pipeline.PreparedSplit,
                     folder: folders.Folder, name: str, sample_size: int, batch_size: int
                     ) -> None:
  statistics = quality.FeatureStatistics.empty(extractor.features(split.read([0])['image'])
                                               .shape[1])
  sample = []
  progress = console.Progress(f'Measuring the {split.split} images in {extractor.name} features',
                              len(split))
  for start in range(0, len(split), batch_size):
    features = extractor.features(split.read(np.arange(start, min(start + batch_size,
                                                                   len(split))))['image'])
    statistics = statistics.add(features)
    sample.append(features[:max(0, sample_size - start)])
    progress.advance(len(features))
  progress.finish()
  # Where the lock cannot be taken, two writers then each publish a whole file.
  folder.write_atomically(f'{name}.npz', lambda file: np.savez(
      file, count=statistics.count, total=statistics.total, outer=statistics.outer,
      sample=np.concatenate(sample)))


def quality_space(config: Any, extractor_name: str, num_samples: int, data_dir: str | None = None,
                  inception_weights: str | None = None, inception_sha256: str | None = None,
                  extractor_steps: int = DOMAIN_PREDICTOR_STEPS
                  ) -> tuple[Extractor, Reference] | None:
  """The feature space `extractor_name` names ('domain' or 'inception') for the dataset a
  training config reads, and the statistics of its eval split there (both made once and cached
  next to the prepared dataset, in data_dir, default the config's); None where the domain
  extractor has nothing to learn (no attribute varies). The training loop and vaegan-figures
  both measure in the space this returns."""
  data, model = config.data, config.model
  data_dir = os.path.expanduser(data_dir or data.data_dir)
  folder = cache_dir(data_dir, data.name, model.resolution, model.image_channels, extractor_name)
  if extractor_name == 'inception':
    extractor = inception_extractor(inception_weights, inception_sha256)
  else:
    extractor = domain_extractor(input_pipeline.open_configured(config, data.train_split,
                                                                data_dir),
                                 folder, extractor_steps)
    if extractor is None:
      return None
  eval_split = input_pipeline.open_configured(config, data.eval_split, data_dir)
  return extractor, reference(extractor, eval_split, folder, num_samples)


def compare(extractor: Extractor, ref: Reference, images: np.ndarray, label: str
            ) -> dict[str, float]:
  """FID, KID (mean and std), precision and recall of `images` against the reference, named
  METRIC_EXTRACTOR_LABEL (e.g. fid_domain_samples)."""
  features = extractor.features(images)
  size = min(len(features), len(ref.sample))
  kid_mean, kid_std = quality.kid(ref.sample, features, subsets=20, subset_size=min(size, 1000))
  precision, recall = quality.precision_recall(ref.sample[:size], features[:size])
  suffix = f'{extractor.name}_{label}'
  return {f'fid_{suffix}': quality.fid(ref.statistics, quality.statistics_of(features)),
          f'kid_{suffix}': kid_mean, f'kid_std_{suffix}': kid_std,
          f'precision_{suffix}': precision, f'recall_{suffix}': recall}
