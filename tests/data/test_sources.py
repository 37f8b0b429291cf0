"""sources.py and lfw.py: CelebA's zip (a damaged member, macOS metadata, two images of one
name), tables (duplicated, empty, not a regular file), split folders; and files that would
exhaust memory, hang or point elsewhere (issue 20), each refused with a line that names the
limit or the problem."""
import io
import os
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

import fake_celeba
from test_real_attributes import write_lfw
from vaegan_jax.configs import tiny
from vaegan_jax.data import lfw, prepare, preprocess, sources
from vaegan_jax.data.dataset_layout import DataError, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from vaegan_jax import folders

SPEC = preprocess.PreprocessSpec(resolution=16)


def png_bytes(width, height):
  buffer = io.BytesIO()
  Image.new('L', (width, height)).save(buffer, 'PNG')
  return buffer.getvalue()


def test_links_to_devices_and_fifos_in_an_image_folder_are_listed_as_corrupt(tmp_path):
  folder = tmp_path / 'images'
  for split in ('train', 'test'):
    (folder / split).mkdir(parents=True)
    Image.fromarray(fake_celeba.image_pixels(0)).save(folder / split / 'good.png')
  (folder / 'train' / 'zero.png').symlink_to('/dev/zero')     # grew to 7.7 GB before
  os.mkfifo(folder / 'train' / 'fifo.png')                   # hung forever before
  started = time.monotonic()
  summary = prepare.prepare(sources.ImageFolder(str(folder)), str(tmp_path / 'data'),
                            preprocess.PreprocessSpec(resolution=8), skip_corrupt=True)
  assert time.monotonic() - started < 60
  assert summary.examples == {'train': 1, 'test': 1}
  assert sorted(summary.skipped_corrupt) == [
      f'train/{name}.png (UnsafeFile: {folder}/train/{name}.png is not a regular file (a '
      f'device, FIFO or socket); not read.)' for name in ('fifo', 'zero')]
  assert not [name for name in os.listdir(tmp_path / 'data' / 'vaegan_images' / 'images_8')
              if name.startswith('incomplete')]


def test_image_bytes_and_pixels_are_capped_before_decoding(tmp_path):
  limits = sources.ImageLimits(max_bytes=10_000, max_pixels=99 * 99)
  big_file = tmp_path / 'big.png'
  big_file.write_bytes(png_bytes(8, 8) + b'\0' * 10_000)
  with pytest.raises(sources.files.UnsafeFile, match=r'over the limit of 10,000 \(raise it with '
                                                      r'--max_image_bytes\)'):
    limits.read_file(str(big_file))
  # The header alone decides: a PNG cut after its header is refused for its size, not as broken.
  header_only = tmp_path / 'large.png'
  header_only.write_bytes(png_bytes(100, 100)[:50])
  with pytest.raises(sources.files.UnsafeFile, match=r'100x100 is 10,000 pixels, over the limit '
                                                      r'of 9,801 \(raise it with '
                                                      r'--max_image_pixels\)'):
    limits.read_file(str(header_only))
  fits = tmp_path / 'fits.png'
  fits.write_bytes(png_bytes(99, 99))
  assert limits.read_file(str(fits)).size == (99, 99)
  assert (sources.ImageLimits().max_bytes, sources.ImageLimits().max_pixels) == (
      MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS)


def test_a_zip_member_is_checked_by_its_declared_size_before_it_is_read(tmp_path, monkeypatch):
  raw = tmp_path / 'raw'
  fake_celeba.write(str(raw), 4)
  archive_path = raw / 'img_align_celeba.zip'
  with zipfile.ZipFile(archive_path) as archive:
    members = [(name, archive.read(name)) for name in archive.namelist()]
  with zipfile.ZipFile(archive_path, 'w', zipfile.ZIP_DEFLATED) as archive:
    for name, data in members:
      archive.writestr(name, b'\0' * 3_000_000 if name.endswith('000002.jpg') else data)
  source = sources.CelebAFiles(str(raw), limits=sources.ImageLimits(max_bytes=1_000_000))
  reads = []
  real_open = zipfile.ZipFile.open
  monkeypatch.setattr(zipfile.ZipFile, 'open', lambda self, member, *args, **kwargs: (
      reads.append(getattr(member, 'filename', member)), real_open(self, member, *args,
                                                                   **kwargs))[1])
  with pytest.raises(sources.files.UnsafeFile, match='000002.jpg unpacks to 3,000,000 bytes, '
                                                     'over the limit of 1,000,000'):
    source.load(source.examples[1])
  assert not reads                                     # refused before a byte was inflated
  assert source.load(source.examples[0])[0].size == (178, 218)


def test_a_zip_with_two_images_of_one_name_is_refused(tmp_path):
  raw = tmp_path / 'raw'
  fake_celeba.write(str(raw), 3)
  with zipfile.ZipFile(raw / 'img_align_celeba.zip', 'a') as archive:
    archive.writestr('other/000001.jpg', fake_celeba.jpeg_bytes(fake_celeba.image_pixels(2)))
  with pytest.raises(DataError, match='holds two images named 000001.jpg '
                                      r'\(img_align_celeba/000001.jpg and other/000001.jpg\)'):
    sources.CelebAFiles(str(raw))


@pytest.mark.parametrize('fraction', [1.0, -0.5, 2.0])
def test_a_test_fraction_outside_zero_and_one_is_refused(tmp_path, fraction):
  Image.fromarray(fake_celeba.image_pixels(0)).save(tmp_path / 'a.png')
  with pytest.raises(DataError, match=fr'test_fraction={fraction} must lie in \[0, 1\)'):
    sources.ImageFolder(str(tmp_path), test_fraction=fraction)


@pytest.mark.parametrize('person', ['../../outside', '..', '.hidden', 'a\\b'])
def test_lfw_names_that_leave_the_image_folder_are_refused(tmp_path, person):
  write_lfw(tmp_path)
  (tmp_path / 'outside').mkdir()
  Image.fromarray(np.zeros((250, 250, 3), np.uint8)).save(tmp_path / 'outside_0001.jpg')
  text = (tmp_path / lfw.ATTRIBUTE_FILE).read_text()
  (tmp_path / lfw.ATTRIBUTE_FILE).write_text(text + f'{person}\t1\t' + '\t'.join(['0.5'] * 73)
                                             + '\n')
  with pytest.raises(DataError, match='would lie outside the image folder'):
    lfw.LFWFiles(str(tmp_path))


def test_tables_that_are_not_regular_files_are_refused(tmp_path):
  raw = tmp_path / 'raw'
  fake_celeba.write(str(raw), 3)
  os.remove(raw / 'list_attr_celeba.txt')
  (raw / 'list_attr_celeba.txt').symlink_to('/dev/zero')
  with pytest.raises(DataError, match='list_attr_celeba.txt is not a regular file'):
    sources.CelebAFiles(str(raw))


def test_the_config_caps_reach_the_source_a_trainer_prepares(tmp_path):
  data = tiny.get_config().data
  data.update(data_dir=str(tmp_path), synthetic_images=0, raw_dir=str(tmp_path / 'raw'),
              max_image_bytes=1234, max_image_pixels=5678)
  fake_celeba.write(str(tmp_path / 'raw'), 3)
  source = prepare.configured_source(data, folders.Folder(str(tmp_path)))
  assert source.limits == sources.ImageLimits(1234, 5678)


def rewrite_zip(raw, change):
  """Rewrite img_align_celeba.zip (deflated, as CelebA ships it) through `change(name, data)`,
  which returns the members to write for each one."""
  path = os.path.join(raw, 'img_align_celeba.zip')
  with zipfile.ZipFile(path) as archive:
    members = [(name, archive.read(name)) for name in archive.namelist()]
  with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
    for name, data in members:
      for new_name, new_data in change(name, data):
        archive.writestr(new_name, new_data)


def flip_bytes_inside(path, member_name):
  """Damage the compressed data of one member (its CRC or its deflate stream then fails)."""
  with zipfile.ZipFile(path) as archive:
    info = archive.getinfo(member_name)
  with open(path, 'r+b') as file:
    file.seek(info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
              + info.compress_size // 2)
    chunk = bytearray(file.read(8))
    file.seek(-len(chunk), os.SEEK_CUR)
    file.write(bytes(value ^ 0xFF for value in chunk))


def test_a_damaged_zip_member_is_a_corrupt_image(tmp_path):
  raw = str(tmp_path / 'raw')
  fake_celeba.write(raw, 20)
  rewrite_zip(raw, lambda name, data: [(name, data)])
  flip_bytes_inside(os.path.join(raw, 'img_align_celeba.zip'), 'img_align_celeba/000005.jpg')
  with pytest.raises(DataError, match=r'(?s)1 corrupt image\(s\).*000005.jpg'):
    prepare.prepare(sources.CelebAFiles(raw), str(tmp_path / 'stop'), SPEC)
  summary = prepare.prepare(sources.CelebAFiles(raw), str(tmp_path / 'data'), SPEC,
                            skip_corrupt=True)
  assert [entry.split()[0] for entry in summary.skipped_corrupt] == ['000005.jpg']
  assert sum(summary.examples.values()) == 19


def test_macos_metadata_in_the_zip_is_ignored(tmp_path):
  raw = str(tmp_path / 'raw')
  names = fake_celeba.write(raw, 20)
  rewrite_zip(raw, lambda name, data: [
      (name, data), (f'__MACOSX/img_align_celeba/._{os.path.basename(name)}', b'\0\5\26\7')])
  source = sources.CelebAFiles(raw)
  assert [example.key for example in source.examples] == names


def test_duplicated_and_empty_tables_are_refused(tmp_path):
  raw = str(tmp_path / 'raw')
  names = fake_celeba.write(raw, 20)
  partition = os.path.join(raw, 'list_eval_partition.txt')
  with open(partition, 'a') as file:
    file.write(f'{names[3]} 2\n')
  with pytest.raises(DataError, match=f'{names[3]} is listed twice'):
    sources.CelebAFiles(raw)

  folder = tmp_path / 'images'
  folder.mkdir()
  for index in range(3):
    Image.fromarray(fake_celeba.image_pixels(index)).save(folder / f'{index}.png')
  csv = tmp_path / 'attributes.csv'
  csv.write_text('path,Smiling\n0.png,1\n1.png,-1\n2.png,1\n1.png,1\n')
  with pytest.raises(DataError, match='1.png has a second row'):
    sources.ImageFolder(str(folder), str(csv))
  csv.write_text('')
  with pytest.raises(DataError, match='is empty'):
    sources.ImageFolder(str(folder), str(csv))


def write_pngs(folder, names):
  folder.mkdir(parents=True, exist_ok=True)
  for index, name in enumerate(names):
    Image.fromarray(fake_celeba.image_pixels(index)).save(folder / name)


def test_train_and_test_subfolders_are_the_splits(tmp_path):
  root = tmp_path / 'exported'
  write_pngs(root / 'train', [f'{index}.png' for index in range(12)])
  write_pngs(root / 'test', ['a.png', 'b.png', 'c.png'])
  source = sources.ImageFolder(str(root))
  assert source.split_by == 'folder'
  splits = {example.key: example.split for example in source.examples}
  assert {key for key, split in splits.items() if split == 'test'} == {
      'test/a.png', 'test/b.png', 'test/c.png'}        # the real test images, and only they
  assert sum(split == 'train' for split in splits.values()) == 12

  hashed = sources.ImageFolder(str(root), split_by='hash', test_fraction=0.5)
  assert hashed.split_by == 'hash'
  assert {example.split for example in hashed.examples} == {'train', 'test'}
  assert {example.key for example in hashed.examples if example.split == 'test'} != {
      'test/a.png', 'test/b.png', 'test/c.png'}

  write_pngs(root, ['stray.png'])
  with pytest.raises(DataError, match='in no split folder .* e.g. stray.png'):
    sources.ImageFolder(str(root))
