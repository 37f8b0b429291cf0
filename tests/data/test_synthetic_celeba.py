"""The synthetic CelebA: CelebA's file formats, determinism, truthful labels, atomic writes."""
import dataclasses
import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from vaegan_jax.data import celeba, synthetic_celeba

CELEBA_ATTRIBUTES = (
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose '
    'Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee '
    'Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes '
    'No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling '
    'Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace '
    'Wearing_Necktie Young')


def eye_region(face):
  """(left, top, right, bottom) that holds the eyes and everything eyeglasses draw, from the
  geometry synthetic_celeba.render draws them with."""
  x, y, s = face.centre_x, face.centre_y, face.scale
  return (int(x - 40 * s) - 2, int(y - 27 * s) - 2, int(x + 40 * s) + 3, int(y + 1 * s) + 3)


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
  out = tmp_path_factory.mktemp('celeba')
  summary = synthetic_celeba.write_celeba(str(out), num_images=300, seed=7, workers=2)
  return out, summary


def read_lines(folder, name):
  with open(os.path.join(folder, name)) as f:
    return f.read().splitlines()


def test_files_have_celeba_names_and_formats(small_set):
  out, summary = small_set
  assert sorted(os.listdir(out)) == sorted(celeba.FILE_NAMES)
  assert summary['images'] == 300
  attribute_lines = read_lines(out, 'list_attr_celeba.txt')
  assert attribute_lines[0] == '300'
  assert attribute_lines[1].split() == CELEBA_ATTRIBUTES.split()
  first = attribute_lines[2].split()
  assert first[0] == '000001.jpg' and len(first) == 41
  assert all(value in ('1', '-1') for line in attribute_lines[2:] for value in line.split()[1:])
  landmark_lines = read_lines(out, 'list_landmarks_align_celeba.txt')
  assert landmark_lines[0] == '300' and len(landmark_lines[1].split()) == 10
  assert len(landmark_lines[2].split()) == 11
  assert read_lines(out, 'identity_CelebA.txt')[299].startswith('000300.jpg ')
  with zipfile.ZipFile(os.path.join(out, 'img_align_celeba.zip')) as archive:
    names = [n for n in archive.namelist() if n.endswith('.jpg')]
    assert names[0] == 'img_align_celeba/000001.jpg' and len(names) == 300
    image = Image.open(io.BytesIO(archive.read(names[-1])))
    assert image.format == 'JPEG' and image.size == (178, 218) and image.mode == 'RGB'


def test_partition_follows_celeba_proportions_in_index_order(small_set):
  out, _ = small_set
  partitions = [int(line.split()[1]) for line in read_lines(out, 'list_eval_partition.txt')]
  assert partitions == sorted(partitions)                      # train, then val, then test
  assert [partitions.count(p) for p in (0, 1, 2)] == [241, 29, 30]   # 80.3 %, 9.8 %, 9.9 %


def test_same_seed_same_files_other_seed_other_files(small_set, tmp_path):
  out, _ = small_set
  digest = lambda folder: {name: hashlib.sha256(open(os.path.join(folder, name), 'rb').read())
                           .hexdigest() for name in celeba.FILE_NAMES}
  synthetic_celeba.write_celeba(str(tmp_path / 'again'), num_images=300, seed=7, workers=1)
  assert digest(tmp_path / 'again') == digest(out)
  synthetic_celeba.write_celeba(str(tmp_path / 'other'), num_images=300, seed=8, workers=1)
  other = digest(tmp_path / 'other')
  assert all(other[name] != digest(out)[name] for name in celeba.FILE_NAMES
             if name != 'list_eval_partition.txt')


def test_written_labels_are_the_drawn_faces_and_undrawn_attributes_are_absent(small_set):
  out, _ = small_set
  rows = np.array([[int(v) for v in line.split()[1:]]
                   for line in read_lines(out, 'list_attr_celeba.txt')[2:]])
  expected = np.array([[1 if drawn else -1 for drawn in synthetic_celeba.attributes(
      synthetic_celeba.sample_face(7, index, 300)).values()] for index in range(300)])
  np.testing.assert_array_equal(rows, expected)
  for column, name in enumerate(celeba.ATTRIBUTE_NAMES):
    if name not in celeba.RENDERED_ATTRIBUTES:
      assert (rows[:, column] == -1).all(), name


def test_every_drawn_attribute_occurs_and_each_face_has_one_hair_state():
  faces = [synthetic_celeba.sample_face(0, index, 2000) for index in range(2000)]   # 100 identities
  labels = [synthetic_celeba.attributes(face) for face in faces]
  for name in celeba.RENDERED_ATTRIBUTES:
    assert 0 < sum(label[name] for label in labels) < 2000, name
  hair_states = ('Bald', 'Black_Hair', 'Blond_Hair', 'Brown_Hair', 'Gray_Hair')
  assert all(sum(label[name] for name in hair_states) == 1 for label in labels)


def changed_pixels(face, **change):
  before = synthetic_celeba.render(face).astype(int)
  after = synthetic_celeba.render(dataclasses.replace(face, **change)).astype(int)
  return np.abs(after - before).sum(axis=-1) > 0


@pytest.mark.parametrize('index', range(6))
def test_eyeglasses_twins_differ_exactly_in_the_eye_region(index):
  face = dataclasses.replace(synthetic_celeba.sample_face(3, index, 100), eyeglasses=False)
  changed = changed_pixels(face, eyeglasses=True)
  left, top, right, bottom = eye_region(face)
  inside = np.zeros_like(changed)
  inside[top:bottom, left:right] = True
  assert changed[inside].sum() > 100           # the glasses are drawn
  assert not changed[~inside].any()            # and nothing else changes


@pytest.mark.parametrize('attribute,change', [
    ('Smiling', 'smiling'), ('Mustache', 'mustache'), ('Bangs', 'bangs'),
    ('Wearing_Hat', 'hat'), ('Wearing_Lipstick', 'lipstick')])
def test_each_drawn_attribute_changes_the_image_and_its_label(attribute, change):
  face = dataclasses.replace(synthetic_celeba.sample_face(5, 0, 100), hair='Brown_Hair', male=True,
                             **{change: False})
  twin = dataclasses.replace(face, **{change: True})
  assert changed_pixels(face, **{change: True}).sum() > 50
  assert not synthetic_celeba.attributes(face)[attribute] and synthetic_celeba.attributes(twin)[attribute]


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
  original, calls = synthetic_celeba.attributes, []

  def interrupted_at_the_50th_image(face):
    calls.append(face)
    if len(calls) == 50:
      raise KeyboardInterrupt
    return original(face)

  monkeypatch.setattr(synthetic_celeba, 'attributes', interrupted_at_the_50th_image)
  out = tmp_path / 'celeba'
  with pytest.raises(KeyboardInterrupt):
    synthetic_celeba.write_celeba(str(out), num_images=300, seed=0, workers=1)
  assert os.listdir(out) == []


def test_bad_image_count_fails_clearly(tmp_path):
  with pytest.raises(ValueError, match='at least one image'):
    synthetic_celeba.write_celeba(str(tmp_path), num_images=0)


def test_a_killed_synthetic_writer_leaves_no_staging_folder_behind(tmp_path):
  out = tmp_path / 'raw'
  out.mkdir()
  dead = out / f'{synthetic_celeba.STAGING_PREFIX}999999999-abc'          # no such pid runs
  alive = out / f'{synthetic_celeba.STAGING_PREFIX}{os.getpid()}-xyz'     # a writer still at work
  for folder in (dead, alive):
    folder.mkdir()
    (folder / 'img_align_celeba.zip').write_bytes(b'partial')
  synthetic_celeba.write_celeba(str(out), 3, workers=1)
  assert not dead.exists() and alive.exists()
  assert sorted(os.listdir(out)) == sorted(celeba.FILE_NAMES + (alive.name,))
