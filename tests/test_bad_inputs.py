"""Inputs that used to crash or pass silently (issue 14, item 5): 16-bit and transparent PNGs,
a damaged member of CelebA's zip, macOS metadata in the zip, duplicated or empty tables, an
unwritable data_dir, a killed synthetic writer's staging folder, a failed checkpoint write."""
import errno
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

import fake_celeba
from vaegan_jax import celeba, checkpoints, prepare, preprocess, sources, state, synthetic
from vaegan_jax.configs import tiny
from vaegan_jax.dataset_layout import DataError

SPEC = preprocess.PreprocessSpec(resolution=16)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
  ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)   # 0 .. 65520
  path = str(tmp_path / 'grey16.png')
  Image.fromarray(ramp).save(path)
  image = sources.ImageLimits().decode(open(path, 'rb').read())
  assert image.mode.startswith('I')                    # how Pillow reads a 16-bit PNG
  pixels = preprocess.to_channels(image, 3)
  expected = np.round(ramp / 257.0).astype(np.uint8)   # 65535 -> 255
  np.testing.assert_array_equal(pixels[..., 0], expected)
  np.testing.assert_array_equal(pixels[..., 2], expected)
  assert 0 < pixels.mean() < 255                       # clipping made every pixel 255


def test_transparent_pixels_show_the_documented_background(tmp_path):
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[..., 0] = 200                                   # red under every pixel
  rgba[:4, :, 3] = 255                                 # top half opaque, bottom transparent
  rgba[4:, :4, 3] = 128                                # bottom-left half transparent
  pixels = preprocess.to_channels(Image.fromarray(rgba, 'RGBA'), 3)
  np.testing.assert_array_equal(pixels[0, 0], [200, 0, 0])
  np.testing.assert_array_equal(pixels[7, 7], preprocess.ALPHA_BACKGROUND)
  # alpha 128/255 of red over white: 200 a + 255 (1 - a), and 255 (1 - a) for green and blue.
  alpha = 128 / 255
  np.testing.assert_allclose(pixels[7, 0], [200 * alpha + 255 * (1 - alpha),
                                            255 * (1 - alpha), 255 * (1 - alpha)], atol=1)


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


def test_an_unwritable_data_dir_is_named(tmp_path):
  raw = str(tmp_path / 'raw')
  fake_celeba.write(raw, 20)
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(DataError, match=f'Cannot write to data_dir {blocker}/data'):
    prepare.prepare(sources.CelebAFiles(raw), str(blocker / 'data'), SPEC)


def test_a_killed_synthetic_writer_leaves_no_staging_folder_behind(tmp_path):
  out = tmp_path / 'raw'
  out.mkdir()
  dead = out / f'{synthetic.STAGING_PREFIX}999999999-abc'          # no such pid runs
  alive = out / f'{synthetic.STAGING_PREFIX}{os.getpid()}-xyz'     # a writer still at work
  for folder in (dead, alive):
    folder.mkdir()
    (folder / 'img_align_celeba.zip').write_bytes(b'partial')
  synthetic.write_celeba(str(out), 3, workers=1)
  assert not dead.exists() and alive.exists()
  assert sorted(os.listdir(out)) == sorted(celeba.FILE_NAMES + (alive.name,))


def test_a_failed_checkpoint_write_stops_with_one_message(tmp_path, monkeypatch):
  config = tiny.get_config()
  initial = state.create_training(config).initial_state
  checkpointer = checkpoints.Checkpointer(str(tmp_path / 'checkpoints'), keep=2)
  checkpointer.save(1, initial, {'next_batch': 1}, config)
  checkpointer.wait()
  checkpointer.save(2, initial, {'next_batch': 2}, config)

  def disk_full():
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(checkpointer.manager, 'wait_until_finished', disk_full)
  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=r'at step 2 .*No space left on device.*kept \(steps 1\)'):
    checkpointer.close()
  monkeypatch.undo()                        # let orbax finish its write and stop its threads
  checkpointer.manager.wait_until_finished()
  checkpointer.manager.close()


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
