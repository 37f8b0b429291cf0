r"""Prepare a dataset once: decode, crop, blur and resize every image, and write it with tfds.

    vaegan-prepare --raw_dir=RAW --data_dir=DATA [--resolution=64]
    python -m vaegan_jax.data.prepare ...                              # the same

Sources (exactly one):
  --raw_dir       CelebA's raw files: img_align_celeba.zip (or the extracted folder),
                  list_attr_celeba.txt and list_eval_partition.txt (Kaggle's .csv also work).
  --image_folder  any folder of images (recursive), with --attributes_csv optionally.
  --lfw_dir       LFW's images (lfw/ or lfw-deepfunneled/) with Kumar et al.'s real-valued
                  attribute scores, lfw_attributes.txt, and optionally peopleDevTest.txt (lfw.py).
  --tfds_name     a tfds image dataset prepared as array_record in --tfds_data_dir (celeb_a, mnist,
                  cifar10, ...); --download asks tfds to download and prepare it first.

The output is the tfds dataset `vaegan_images/NAME_R` (NAME_R_grey with --channels=1) in
--data_dir, in the array_record format, which reads without TensorFlow: per example the uint8
image [R, R, C], the attributes [A] (bool, or float32 where real-valued) and the source file
name. Splits are the source's (CelebA: train, validation, test). Records keep the source order.
Decoding runs on --workers threads, and one progress line counts the images (tfds's own bars
and lines are kept out of the console). tfds writes into a temporary folder and renames it when
complete, so a failed or interrupted prepare never leaves anything that reads as a dataset.

--augmented_copies=N also writes the authors' augmented training set (augment.py): N copies of
the --augment_splits images, each with its own random warp, gamma, contrast and hue, as the
dataset NAME_augmentedN_seedS with one split 'train'. The authors trained CelebA on 600,000.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import glob
import io
import os
import time
import zipfile
import zlib
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds
import threadpoolctl
from absl import app, flags, logging
from PIL import Image

from vaegan_jax import console, folders, ranges
from vaegan_jax.data import (augment, celeba, lfw, prepared_documents, preprocess, sources,
                             synthetic_celeba)
from vaegan_jax.data.dataset_layout import (ATTRIBUTE_DTYPES, DataError, MAX_IMAGE_BYTES,
                                            MAX_IMAGE_PIXELS, SPLITS, VERSION, augmented_name,
                                            config_name, dataset_dir, dataset_folder)


@dataclasses.dataclass
class PrepareSummary:
  path: str
  examples: dict[str, int]
  skipped_corrupt: list[str]
  seconds: float
  bytes: int

  def __str__(self) -> str:
    total = sum(self.examples.values())
    splits = ', '.join(f'{split} {count}' for split, count in self.examples.items())
    return (f'Prepared {total} images ({splits}) in {self.seconds:.1f} s '
            f'({total / max(self.seconds, 1e-9):.0f} images/s), {self.bytes / 2**20:.1f} MiB, '
            f'{len(self.skipped_corrupt)} corrupt skipped -> {self.path}')


# ---------------------------------------------------------------- decoding
def load_example(source: sources.Source, spec: preprocess.PreprocessSpec,
                 example: sources.Example
                 ) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
  """(image [R, R, C] uint8, attributes, None), or (None, None, why) for a corrupt image."""
  try:
    image, attributes = source.load(example)
    return preprocess.preprocess(image, spec), attributes, None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
          zipfile.BadZipFile, zlib.error) as error:   # the last two: a damaged member of a zip
    return None, None, f'{type(error).__name__}: {error}'


def ordered_map(pool: concurrent.futures.Executor, function: Callable, items: Iterable,
                window: int) -> Iterator:
  """pool.map, in order, with at most `window` results waiting: memory stays flat however
  slowly the results are consumed."""
  pending: collections.deque = collections.deque()
  for item in items:
    pending.append(pool.submit(function, item))
    if len(pending) >= window:
      yield pending.popleft().result()
  while pending:
    yield pending.popleft().result()


# ---------------------------------------------------------------- the tfds builder
class LocalDatasetInfo(tfds.core.DatasetInfo):
  """tfds's DatasetInfo, but never looked up on tfds's bucket: these datasets are made here.
  (tfds's lookup makes a temporary folder for the files it would fetch, and leaves it behind
  when there are none, one per prepare.)"""

  def initialize_from_bucket(self) -> None:
    pass


class VaeganImages(tfds.core.GeneratorBasedBuilder):
  """Preprocessed images at the training resolution, for the input pipeline."""

  VERSION = tfds.core.Version(VERSION)

  def __init__(self, *, source: sources.Source, spec: preprocess.PreprocessSpec,
               load_all: Callable[[list[sources.Example]], Iterator], skip_corrupt: bool,
               **kwargs: Any):
    self.source, self.spec, self.load_all = source, spec, load_all
    self.skip_corrupt = skip_corrupt
    self.corrupt: list[str] = []
    self.splits = [split for split in SPLITS
                   if any(example.split == split for example in source.examples)]
    super().__init__(config=config_name(source.name, spec.resolution, spec.channels),
                     file_format='array_record', **kwargs)

  @classmethod
  def get_builder_config(cls, name: str, version: Any = None) -> tfds.core.BuilderConfig:
    """Every name is a config of ours (NAME_R): tfds need not warn of a 'custom' one."""
    return tfds.core.BuilderConfig(name=name)

  def _info(self) -> tfds.core.DatasetInfo:
    shape = (self.spec.resolution, self.spec.resolution, self.spec.channels)
    return LocalDatasetInfo(
        builder=self,
        description=f'{self.source.name} preprocessed by vaegan_jax.data.prepare: {self.spec}.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=shape, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            'attributes': tfds.features.Tensor(shape=(len(self.source.attribute_names),),
                                               dtype=ATTRIBUTE_DTYPES[self.source.attribute_kind],
                                               encoding=tfds.features.Encoding.BYTES),
            'name': tfds.features.Text(),
        }),
        disable_shuffling=True,      # record i of a split is the source's i-th image
        metadata=tfds.core.MetadataDict(
            attribute_names=list(self.source.attribute_names),
            attribute_kind=self.source.attribute_kind, crop=self.spec.crop,
            resolution=self.spec.resolution, channels=self.spec.channels,
            source=self.source.name, skipped_corrupt=self.corrupt))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in self.splits}

  def _generate_examples(self, split: str):
    examples = [example for example in self.source.examples if example.split == split]
    index = 0
    for example, (image, attributes, error) in zip(examples, self.load_all(examples)):
      if error is not None:
        self.corrupt.append(f'{example.key} ({error})')
        continue
      yield index, {'image': image, 'attributes': attributes, 'name': example.key}
      index += 1
    if self.corrupt and not self.skip_corrupt and split == self.splits[-1]:
      listing = '\n  '.join(self.corrupt)
      raise DataError(
          f'{len(self.corrupt)} corrupt image(s) in {self.source.name}; nothing was written:\n'
          f'  {listing}\nReplace them from a fresh download, or pass --skip_corrupt to leave '
          f'them out (the summary counts them).')


# ---------------------------------------------------------------- preparing
def data_folder(data_dir: str, flag: str = '--data_dir') -> folders.Folder:
  """The data_dir, made if needed and known to take a file: a DataError naming it now, instead
  of tfds's traceback halfway through. Everything prepare writes goes through it."""
  try:
    return folders.Folder(data_dir, 'data_dir', flag).make()
  except folders.FolderError as error:
    raise DataError(str(error)) from None


def remove_stale_incomplete(versions: folders.Folder) -> None:
  """Delete what an interrupted prepare left among a dataset's versions (tfds's incomplete.*
  folders). Called only while holding the dataset's lock, so no live writer owns them."""
  for leftover in versions.list():
    if leftover.startswith('incomplete.'):
      logging.info('Removing %s, left by an interrupted prepare.', versions.path(leftover))
      versions.remove_tree(leftover)


def prepare(source: sources.Source, data_dir: str, spec: preprocess.PreprocessSpec,
            workers: int = 0, skip_corrupt: bool = False) -> PrepareSummary:
  """Write `source` preprocessed per `spec` to `data_dir`; a no-op if already prepared.

  One process at a time prepares a dataset: a second one started beside it waits for the
  first's lock, then finds the dataset written and reuses it.

  workers: decoding threads; 0 means one per core.
  """
  path = dataset_dir(data_dir, source.name, spec.resolution, spec.channels)
  versions = data_folder(data_dir).sub(dataset_folder(source.name, spec.resolution,
                                                      spec.channels))
  start = time.time()
  with folders.exclusive(versions, 'prepare', f'preparing {path}') as lock:
    if lock.held:
      remove_stale_incomplete(versions)
    else:
      logging.warning('Leaving any incomplete.* folders in %s: without a lock they may be '
                      'another prepare\'s.', versions.path())
    if not versions.exists(f'{VERSION}/dataset_info.json'):
      versions.check_plain()          # tfds writes here by path: no link may lead it away
      _write(source, data_dir, spec, workers, skip_corrupt)
  prepared = prepared_documents.read(path)
  return PrepareSummary(
      path=path, examples={split: sum(count for _, count in shards)
                           for split, shards in prepared.shards.items()},
      skipped_corrupt=list(prepared.skipped_corrupt), seconds=time.time() - start,
      bytes=sum(os.path.getsize(os.path.join(path, file)) for file in os.listdir(path)))


def _write(source: sources.Source, data_dir: str, spec: preprocess.PreprocessSpec,
           workers: int, skip_corrupt: bool) -> None:
  # Threads, not processes: JPEG decoding and the resize matmuls release the GIL, and threads
  # need no pickling of the source and no re-import of the caller's main module. One BLAS thread
  # each: numpy's BLAS would otherwise start a thread per core inside every one of them.
  workers = workers or os.cpu_count() or 1
  name = config_name(source.name, spec.resolution, spec.channels)
  progress = console.Progress(f'Preparing {name}', len(source.examples))

  def counted(results: Iterator) -> Iterator:
    for result in results:
      progress.advance()
      yield result

  with (concurrent.futures.ThreadPoolExecutor(workers) as pool,
        threadpoolctl.threadpool_limits(limits=1, user_api='blas')):
    load = functools.partial(load_example, source, spec)
    builder = VaeganImages(
        source=source, spec=spec, skip_corrupt=skip_corrupt, data_dir=data_dir,
        load_all=lambda examples: counted(ordered_map(pool, load, examples,
                                                      window=64 * workers)))
    # Our progress line instead of tfds's bars, and none of the lines tfds prints to stdout
    # ("Downloading and preparing ...", "downloaded and prepared to ...": nothing is downloaded).
    tfds.disable_progress_bar()
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare()
  progress.finish()


def ensure_prepared(data_config: Any, resolution: int, channels: int) -> None:
  """Prepare the configured dataset on first use, where the config says how.

  data_config.synthetic_images > 0: synthetic CelebA of that many faces, generated once into
  DATA_DIR/raw/synthetic_N and prepared under data_config.name. data_config.raw_dir: CelebA's raw
  files there. Otherwise the dataset must have been prepared already (vaegan-prepare). With
  data_config.augmented_copies > 0, the augmented copies of its train_split too.
  """
  data_dir = os.path.expanduser(data_config.data_dir)
  missing = lambda name: not os.path.exists(os.path.join(
      dataset_dir(data_dir, name, resolution, channels), 'dataset_info.json'))
  copies_name = augmented_name(data_config.name, data_config.augmented_copies,
                               data_config.augment_seed)
  needs_copies = data_config.augmented_copies > 0 and missing(copies_name)
  if not missing(data_config.name) and not needs_copies:
    return
  folder = data_folder(data_dir, '--config.data.data_dir')
  source = configured_source(data_config, folder)
  if source is None:
    return                     # the reader says how to prepare it (input_pipeline.open_prepared)
  spec = preprocess.PreprocessSpec(crop='celeba', resolution=resolution, channels=channels)
  if missing(data_config.name):
    logging.info('%s', prepare(source, data_dir, spec))
  if needs_copies:
    copies = augment.AugmentedCopies(source, data_config.augmented_copies,
                                     data_config.augment_seed,
                                     tuple(data_config.train_split.split('+')))
    logging.info('%s', prepare(copies, data_dir, spec))


# ---------------------------------------------------------------- the sources
@dataclasses.dataclass(frozen=True)
class SourceOptions:
  """What a source takes besides its own flag's value (the flags of the same names)."""
  name: str | None = None
  limits: sources.ImageLimits = sources.ImageLimits()
  attributes_csv: str | None = None
  test_fraction: float = 0.05
  split_by: str = 'auto'
  data_dir: str | None = None
  tfds_data_dir: str | None = None
  download: bool = False


def _image_folder(root: str, options: SourceOptions) -> sources.Source:
  source = sources.ImageFolder(root, options.attributes_csv, options.test_fraction,
                               name=options.name, split_by=options.split_by,
                               limits=options.limits)
  print(f'{root}: splits by {source.split_by}.')
  return source


def _tfds_dataset(dataset: str, options: SourceOptions) -> sources.Source:
  data_dir = options.tfds_data_dir or options.data_dir
  if options.download:
    download_tfds(dataset, data_dir)
  elif not tfds_prepared(dataset, data_dir):
    # Without --download nothing is fetched: tfds itself would try its bucket and the dataset's
    # own source (Google Drive for celeb_a) for minutes, and leave folders behind.
    raise DataError(
        f'The tfds dataset {dataset!r} is not prepared in {data_dir} (no '
        f'{os.path.join(data_dir, dataset.split(":")[0])}/.../dataset_info.json), and without '
        f'--download nothing is fetched. Pass --download to let tfds fetch and prepare it '
        f'(it needs TensorFlow), or point --tfds_data_dir at where it is prepared'
        f'{", or prepare CelebA from its raw files with --raw_dir" if "celeb" in dataset else ""}.')
  return sources.TfdsDataset(dataset, data_dir, name=options.name)


def tfds_prepared(dataset: str, data_dir: str) -> bool:
  """Whether tfds's folder for `dataset` ('name', 'name:version' or 'name/config:version') in
  data_dir holds a prepared version (DATA_DIR/NAME[/CONFIG]/VERSION/dataset_info.json)."""
  folder = os.path.join(data_dir, dataset.split(':')[0])
  return bool(glob.glob(os.path.join(folder, '*', 'dataset_info.json'))
              or glob.glob(os.path.join(folder, '*', '*', 'dataset_info.json')))


# The sources, by the flag that names one: (its help, (the flag's value, options) -> Source).
# Adding a source is a class in sources.py (or a module of its own) and one row here.
SOURCES: dict[str, tuple[str, Callable[[str, SourceOptions], sources.Source]]] = {
    'raw_dir': ("Folder with CelebA's raw files.",
                lambda raw_dir, options: sources.CelebAFiles(
                    raw_dir, name=options.name or 'celeba', limits=options.limits)),
    'image_folder': ('Folder of images (searched recursively).', _image_folder),
    'lfw_dir': ("Folder with LFW's images and lfw_attributes.txt.",
                lambda lfw_dir, options: lfw.LFWFiles(lfw_dir, name=options.name or 'lfw',
                                                      limits=options.limits)),
    'tfds_name': ('A tfds image dataset, e.g. celeb_a, mnist, cifar10.', _tfds_dataset),
}


def configured_source(data_config: Any, data_dir: folders.Folder) -> sources.Source | None:
  """CelebA's raw files the config names: synthetic ones drawn once, or data.raw_dir; None when
  the config names neither."""
  if data_config.synthetic_images:
    raw = data_dir.sub(f'raw/synthetic_{data_config.synthetic_images}')
    raw_dir = raw.path()
    folders.make_once(
        raw, 'draw', lambda: all(raw.exists(name) for name in celeba.FILE_NAMES),
        lambda: _draw_synthetic(raw, data_config.synthetic_images), f'drawing {raw_dir}')
  elif data_config.raw_dir:
    raw_dir = os.path.expanduser(data_config.raw_dir)
  else:
    return None
  limits = sources.ImageLimits(data_config.max_image_bytes, data_config.max_image_pixels)
  return SOURCES['raw_dir'][1](raw_dir, SourceOptions(name=data_config.name, limits=limits))


def _draw_synthetic(raw: folders.Folder, count: int) -> None:
  logging.info('Drawing %d synthetic faces into %s (once).', count, raw.path())
  synthetic_celeba.write_celeba(raw, count, seed=0)


def download_tfds(dataset: str, data_dir: str) -> None:
  """Let tfds download and prepare `dataset` as array_record; explain the usual failures."""
  try:
    tfds.builder(dataset, data_dir=data_dir, file_format='array_record').download_and_prepare()
  except Exception as error:   # network, checksum and Drive errors come in many types
    raise DataError(
        f'tfds could not download and prepare {dataset!r}: {type(error).__name__}: {error}. '
        f'CelebA\'s Google Drive files often exceed their download quota. Download the five raw '
        f'files yourself ({celeba.WHERE_TO_GET_IT}) and run prepare with --raw_dir.') from error


# ---------------------------------------------------------------- command line
def define_flags() -> None:
  """The command line's flags; defined only when run as a command, so importing this module
  next to other absl programs adds no flags."""
  for flag, (help_text, _) in SOURCES.items():
    flags.DEFINE_string(flag, None, help_text)
  flags.DEFINE_string('attributes_csv', None, 'With --image_folder: CSV of attributes (binary, '
                      'or real-valued).')
  flags.DEFINE_string('tfds_data_dir', None, 'data_dir of --tfds_name (default: --data_dir).')
  flags.DEFINE_bool('download', False, 'With --tfds_name: let tfds download and prepare it first.')
  flags.DEFINE_string('data_dir', None, 'Where to write the prepared dataset.', required=True)
  flags.DEFINE_integer('resolution', 64, 'Output side in pixels (32, 64, 128, ...).',
                       lower_bound=ranges.RESOLUTIONS[0], upper_bound=ranges.RESOLUTIONS[1])
  flags.DEFINE_enum('channels', '3', ['1', '3'], '3: grey is repeated; 1: colour to luminance.')
  flags.DEFINE_string('name', None, 'Dataset name (default: celeba, the folder or tfds name).')
  flags.DEFINE_float('test_fraction', 0.05, 'With --image_folder and split by hash: share of '
                     'images held out as the test split.')
  flags.register_validator('test_fraction', lambda value: 0 < value < 1,
                           'must lie strictly between 0 and 1, e.g. 0.05')
  flags.DEFINE_enum('split_by', 'auto', list(sources.SPLIT_BY),
                    'With --image_folder: the splits from train/ val/ test/ subfolders (folder), '
                    'from a hash of each path (hash), or folder where they exist (auto).')
  flags.DEFINE_bool('skip_corrupt', False, 'Leave corrupt images out instead of stopping.')
  flags.DEFINE_integer('workers', 0, 'Decoding threads (0: one per core).',
                       lower_bound=ranges.WORKERS[0], upper_bound=ranges.WORKERS[1])
  flags.DEFINE_integer('augmented_copies', 0, 'Also write this many augmented copies of the '
                       '--augment_splits images as the dataset NAME_augmentedN_seedS (the '
                       "authors' CelebA training set: 600000).", lower_bound=0,
                       upper_bound=ranges.IMAGE_COUNTS[1])
  flags.DEFINE_integer('augment_seed', 0, 'Seed of the augmented copies.',
                       lower_bound=ranges.SEEDS[0], upper_bound=ranges.SEEDS[1])
  flags.DEFINE_list('augment_splits', ['train', 'validation'], 'Splits whose images are copied.')
  flags.DEFINE_integer('max_image_bytes', MAX_IMAGE_BYTES, 'The largest image file (or zip '
                       'member) read; larger ones are listed as corrupt.',
                       lower_bound=ranges.IMAGE_BYTES[0], upper_bound=ranges.IMAGE_BYTES[1])
  flags.DEFINE_integer('max_image_pixels', MAX_IMAGE_PIXELS, 'The most pixels one image may '
                       'decode to, read from its header first; larger ones are listed as '
                       'corrupt.', lower_bound=ranges.IMAGE_PIXELS[0],
                       upper_bound=ranges.IMAGE_PIXELS[1])


def source_from_flags() -> sources.Source:
  args = flags.FLAGS
  chosen = [flag for flag in SOURCES if args[flag].value]
  if len(chosen) != 1:
    raise app.UsageError(f'Give exactly one of {", ".join("--" + flag for flag in SOURCES)} '
                         f'(got {", ".join("--" + flag for flag in chosen) or "none"}).')
  options = SourceOptions(
      **{field.name: args[field.name].value for field in dataclasses.fields(SourceOptions)
         if field.name != 'limits'},
      limits=sources.ImageLimits(args.max_image_bytes, args.max_image_pixels))
  flag = chosen[0]
  return SOURCES[flag][1](args[flag].value, options)


def main(argv: list[str]) -> None:
  del argv
  args = flags.FLAGS
  source = source_from_flags()
  spec = preprocess.PreprocessSpec(crop=source.crop, resolution=args.resolution,
                                   channels=int(args.channels))
  print(prepare(source, args.data_dir, spec, args.workers, args.skip_corrupt))
  if args.augmented_copies:
    copies = augment.AugmentedCopies(source, args.augmented_copies, args.augment_seed,
                                     tuple(args.augment_splits))
    print(prepare(copies, args.data_dir, spec, args.workers, args.skip_corrupt))


def run() -> None:
  """Console script `vaegan-prepare`."""
  define_flags()
  console.run_main('vaegan-prepare', main, (DataError,))


if __name__ == '__main__':
  run()
