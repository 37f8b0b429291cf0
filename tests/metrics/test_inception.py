"""The FID Inception port against pytorch-fid's own model (a fixture it computed with seeded
weights, experiments/make_inception_fixture.py), the .pth reader on files torch.save wrote, and
the messages for missing or wrong weights."""
import hashlib
import io
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hostile_pth
import seeded_inception
from tiny_runs import REPO
from vaegan_jax.metrics import inception, pth

FIXTURES = os.path.join(REPO, 'tests', 'fixtures')


def torch_name_and_shape(flax_name, shape):
  """A flax param of FIDInceptionV3 -> its name and shape in pytorch-fid's state dict."""
  path = flax_name.split('/')
  if path[-1] == 'kernel':                       # [kh, kw, I, O] <- [O, I, kh, kw]
    return '.'.join(path[:-1] + ['weight']), (shape[3], shape[2], shape[0], shape[1])
  leaf = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
          'variance': 'running_var'}[path[-1]]
  return '.'.join(path[:-1] + ['bn', leaf]), tuple(shape)


def parameter_shapes():
  """The flattened names and shapes of FIDInceptionV3's params."""
  shapes = jax.eval_shape(lambda: inception.FIDInceptionV3().init(
      jax.random.key(0), jnp.zeros((1, 299, 299, 3))))
  return {'/'.join(str(getattr(entry, 'key', entry)) for entry in path): leaf.shape
          for path, leaf in jax.tree_util.tree_leaves_with_path(shapes['params'])}


def seeded_state_dict():
  return dict(torch_name_and_shape(name, shape) for name, shape in parameter_shapes().items())


def test_the_port_matches_pytorch_fid_on_the_fixture():
  names_and_shapes = seeded_state_dict()
  state = {name: seeded_inception.seeded_tensor(name, shape)
           for name, shape in names_and_shapes.items()}
  convs = [name for name in state if name.endswith('conv.weight')]
  assert len(state) == 5 * len(convs) == 5 * 94            # each conv and its batch norm's four
  params = inception.params_from_state_dict(state)
  fixture = np.load(os.path.join(FIXTURES, 'inception_fixture.npz'))
  features = inception.features(params, fixture['images'])
  assert features.shape == (3, 2048)
  np.testing.assert_allclose(features, fixture['features'], rtol=1e-3,
                             atol=1e-3 * np.abs(fixture['features']).mean())


def test_the_resize_is_pytorchs_bilinear_without_align_corners():
  matrix = inception.bilinear_matrix(4, 8)
  # Output pixel o samples (o + 0.5) * 4 / 8 - 0.5, clamped at 0: 0, 0.25, 0.75, 1.25, ...
  np.testing.assert_allclose(matrix[0], [1, 0, 0, 0])
  np.testing.assert_allclose(matrix[1], [0.75, 0.25, 0, 0])
  np.testing.assert_allclose(matrix[2], [0.25, 0.75, 0, 0])
  np.testing.assert_allclose(matrix[7], [0, 0, 0, 1])
  np.testing.assert_allclose(inception.bilinear_matrix(32).sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize('layout', ['zip', 'legacy'])
def test_pth_files_written_by_torch_round_trip(layout):
  state = pth.read_state_dict(os.path.join(FIXTURES, f'tiny_state_dict_{layout}.pth'))
  expected = np.load(os.path.join(FIXTURES, 'tiny_state_dict.npz'))
  assert set(state) == {name.replace('__', '.') for name in expected.files}
  for name in expected.files:
    got = state[name.replace('__', '.')]
    assert got.dtype == expected[name].dtype and got.shape == expected[name].shape
    np.testing.assert_array_equal(got, expected[name])
  np.testing.assert_array_equal(state['layer.transposed'],
                                np.arange(12, dtype=np.float32).reshape(3, 4).T)


def test_pth_reader_refuses_other_classes_and_damaged_files(tmp_path):
  marker = tmp_path / 'ran'
  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps({'x': hostile_pth.RunsCommand(marker)}))
  with pytest.raises(pth.PthError, match='asks to unpickle posix.system|asks to unpickle os'):
    pth.read_state_dict(str(path))
  assert not marker.exists()
  truncated = tmp_path / 'truncated.pth'
  truncated.write_bytes(open(os.path.join(FIXTURES, 'tiny_state_dict_legacy.pth'),
                             'rb').read()[:200])
  with pytest.raises(pth.PthError, match='damaged or incomplete'):
    pth.read_state_dict(str(truncated))


@pytest.mark.parametrize('where', ['first pickle', 'system info', 'storage keys'])
def test_a_legacy_file_cannot_run_code_in_any_of_its_pickles(tmp_path, where):
  """Issue 20, item 1: the legacy layout's header pickles went through plain pickle.load."""
  marker = tmp_path / 'ran'
  payload = pickle.dumps(hostile_pth.RunsCommand(marker), protocol=2)
  good = open(os.path.join(FIXTURES, 'tiny_state_dict_legacy.pth'), 'rb').read()
  stream = io.BytesIO(good)
  boundaries = [0]
  for _ in range(5):                       # magic, protocol, system info, state, keys
    pickle.load(stream) if len(boundaries) != 4 else pth._Unpickler(
        stream, lambda *unused: np.zeros(64, np.float32), 1 << 20).load()
    boundaries.append(stream.tell())
  replaced = {'first pickle': 0, 'system info': 2, 'storage keys': 4}[where]
  hostile = good[:boundaries[replaced]] + payload + good[boundaries[replaced + 1]:]
  path = tmp_path / 'evil_legacy.pth'
  path.write_bytes(hostile)
  with pytest.raises(pth.PthError, match='asks to unpickle'):
    pth.read_state_dict(str(path))
  assert not marker.exists()


@pytest.mark.parametrize('layout', ['zip', 'legacy'])
@pytest.mark.parametrize('size, stride, offset, message', [
    ((4,), (2**40,), 0, 'outside its data'),            # segfaulted
    ((4096,), (1,), 0, 'outside its data'),             # read 4,092 elements off the heap
    ((2,), (1,), 3, 'outside its data'),
    ((2,), (-1,), 2, 'non-negative'),
    ((2,), (1,), -1, 'non-negative'),
    ((2, 2), (1,), 0, 'one stride per dimension'),
])
def test_tensor_views_must_lie_inside_their_storage(tmp_path, layout, size, stride, offset,
                                                     message):
  """Issue 20, item 2: size, stride and offset came from the file and were used unchecked."""
  path = str(tmp_path / 'views.pth')
  write = hostile_pth.write_zip if layout == 'zip' else hostile_pth.write_legacy
  write(path, {'w': ('0', 'FloatStorage', offset, size, stride)},
        {'0': hostile_pth.float_storage(4)})
  with pytest.raises(pth.PthError, match=message):
    pth.read_state_dict(path)


@pytest.mark.parametrize('layout', ['zip', 'legacy'])
def test_valid_views_and_both_byte_orders_read_back(tmp_path, layout):
  path = str(tmp_path / 'views.pth')
  storages = {'0': hostile_pth.float_storage(12), '1': ('LongStorage', np.array([7, -3]))}
  tensors = {'transposed': ('0', 'FloatStorage', 1, (3, 2), (1, 4)),
             'broadcast': ('1', 'LongStorage', 1, (3,), (0,)), 'empty': ('0', 'FloatStorage', 0,
                                                                      (0, 5), (5, 1))}
  expected = {'transposed': np.arange(12, dtype=np.float32)[1:].reshape(-1)[
                  [[0, 4], [1, 5], [2, 6]]],
              'broadcast': np.array([-3, -3, -3]), 'empty': np.zeros((0, 5), np.float32)}
  for big in (False, True):
    if layout == 'zip':
      hostile_pth.write_zip(path, tensors, storages, byteorder='big' if big else 'little')
    else:
      hostile_pth.write_legacy(path, tensors, storages, little_endian=not big)
    state = pth.read_state_dict(path)
    for name, values in expected.items():
      assert state[name].dtype == values.dtype and state[name].dtype.isnative
      np.testing.assert_array_equal(state[name], values)


def test_what_a_file_asks_to_allocate_is_bounded(tmp_path):
  """Issue 20, item 1: storage sizes, element counts and copies were unbounded."""
  path = str(tmp_path / 'large.pth')
  hostile_pth.write_zip(path, {'w': ('0', 'FloatStorage', 0, (4,), (1,))},
                        {'0': ('FloatStorage', np.zeros(300_000, np.float32))})
  with pytest.raises(pth.PthError, match='over the limit of 1,000,000'):
    pth.read_state_dict(path, max_bytes=1_000_000)
  # A storage said to hold 10^12 elements in a legacy file of a few hundred bytes.
  storages = {'0': hostile_pth.float_storage(4)}
  tensors = {'w': ('0', 'FloatStorage', 0, (4,), (1,))}
  legacy = tmp_path / 'numel.pth'
  hostile_pth.write_legacy(str(legacy), tensors, storages)
  data = legacy.read_bytes().replace(b'K\x04N', b'\x8a\x06\x00\x10\xa5\xd4\xe8\x00N', 1)
  legacy.write_bytes(data)
  with pytest.raises(pth.PthError, match='does not fit in the file'):
    pth.read_state_dict(str(legacy))
  # The count before a storage's bytes disagrees with the tensors'.
  hostile_pth.write_legacy(str(legacy), tensors, storages, counts={'0': 2**40})
  with pytest.raises(pth.PthError, match='holds 1099511627776 elements'):
    pth.read_state_dict(str(legacy))
  # A stride-0 view copied out as 10^9 elements of one float.
  hostile_pth.write_zip(path, {'w': ('0', 'FloatStorage', 0, (10**9,), (0,))}, storages)
  with pytest.raises(pth.PthError, match='more bytes than the limit'):
    pth.read_state_dict(path, max_bytes=1 << 20)
  # One storage named as two types.
  hostile_pth.write_zip(path, {'a': ('0', 'FloatStorage', 0, (4,), (1,))}, storages,
                        data_pkl=hostile_pth.state_pickle(
                            {'a': ('0', 'FloatStorage', 0, (4,), (1,)),
                             'b': ('1', 'LongStorage', 0, (2,), (1,))},
                            {'0': storages['0'], '1': ('LongStorage', np.zeros(4, np.int64))}
                        ).replace(b'X\x01\x00\x00\x001', b'X\x01\x00\x00\x000'))
  with pytest.raises(pth.PthError, match='Storage 0 is named as LongStorage'):
    pth.read_state_dict(path)


def test_a_link_to_a_device_is_not_read(tmp_path):
  link = tmp_path / 'zero.pth'
  link.symlink_to('/dev/zero')
  with pytest.raises(pth.PthError, match='not a regular file'):
    pth.read_state_dict(str(link))


def test_missing_or_wrong_weights_name_the_url_and_the_full_digest(tmp_path):
  with pytest.raises(inception.WeightsError, match='pt_inception-2015-12-05-6726825d.pth.*'
                                                   f'SHA-256 {inception.FID_WEIGHTS_SHA256}, '
                                                   '95,628,359 bytes'):
    inception.weights_bytes(str(tmp_path / 'nowhere.pth'))
  wrong = tmp_path / 'wrong.pth'
  wrong.write_bytes(b'not the weights')
  with pytest.raises(inception.WeightsError, match='not the expected SHA-256 6726825d0af5.*'
                                                   'https://github.com/mseitzer/pytorch-fid'):
    inception.weights_bytes(str(wrong))
  with pytest.raises(inception.WeightsError, match='not 64 hex digits'):
    inception.weights_bytes(str(wrong), sha256='6726825d')


def test_the_whole_digest_is_checked_not_its_first_eight_digits(tmp_path, monkeypatch):
  """Issue 20, item 1: a file whose SHA-256 shared the first 8 hex digits was accepted. Here the
  expected digest is made to share them with a hostile file's."""
  marker = tmp_path / 'ran'
  hostile = tmp_path / 'hostile.pth'
  hostile.write_bytes(pickle.dumps(hostile_pth.RunsCommand(marker)))
  digest = hashlib.sha256(hostile.read_bytes()).hexdigest()
  monkeypatch.setattr(inception, 'FID_WEIGHTS_SHA256', digest[:8] + '0' * 56)
  with pytest.raises(inception.WeightsError, match=f'has SHA-256 {digest}'):
    inception.load_params(str(hostile))
  # Even with its full digest pinned, the file is parsed without running its payload.
  with pytest.raises(inception.WeightsError, match='asks to unpickle'):
    inception.load_params(str(hostile), sha256=digest)
  assert not marker.exists()


def test_the_bytes_checked_are_the_bytes_parsed(tmp_path, monkeypatch):
  """The file is read once: replacing it right after the digest is taken changes nothing."""
  path = tmp_path / 'weights.pth'
  path.write_bytes(open(os.path.join(FIXTURES, 'tiny_state_dict_zip.pth'), 'rb').read())
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  real_sha256 = hashlib.sha256

  def swapping_sha256(data):
    path.write_bytes(pickle.dumps(hostile_pth.RunsCommand(tmp_path / 'ran')))
    return real_sha256(data)
  monkeypatch.setattr(inception.hashlib, 'sha256', swapping_sha256)
  # The tiny state dict's names are not Inception's: proof that the original bytes were parsed.
  with pytest.raises(inception.WeightsError, match="Unexpected tensor 'layer.weight'"):
    inception.load_params(str(path), sha256=digest)
  assert not (tmp_path / 'ran').exists()
