"""sources.py and lfw.py on files that would exhaust memory, hang, or point elsewhere (issue 20,
items 6 and 7): each is refused with a line that names the limit or the problem."""
import io
import os
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

import fake_celeba
from test_real_attributes import write_lfw
from vaegan_jax import lfw, prepare, preprocess, sources
from vaegan_jax.configs import tiny
from vaegan_jax.dataset_layout import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, DataError


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


@pytest.mark.parametrize('fraction', [0.0, 1.0, -0.5, 2.0])
def test_a_test_fraction_outside_zero_and_one_is_refused(tmp_path, fraction):
  Image.fromarray(fake_celeba.image_pixels(0)).save(tmp_path / 'a.png')
  with pytest.raises(DataError, match=f'test_fraction={fraction} must lie strictly between 0 '
                                      'and 1'):
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
  source = prepare.configured_source(data, str(tmp_path))
  assert source.limits == sources.ImageLimits(1234, 5678)
