"""The FID Inception port against pytorch-fid's own model (a fixture it computed with seeded
weights, experiments/make_inception_fixture.py), the .pth reader on files torch.save wrote, and
the messages for missing or wrong weights."""
import os
import pickle
import zipfile

import numpy as np
import pytest

import seeded_inception
from vaegan_jax import inception, pth

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def torch_name_and_shape(flax_name, shape):
  """A flax param of FIDInceptionV3 -> its name and shape in pytorch-fid's state dict."""
  path = flax_name.split('/')
  if path[-1] == 'kernel':                       # [kh, kw, I, O] <- [O, I, kh, kw]
    return '.'.join(path[:-1] + ['weight']), (shape[3], shape[2], shape[0], shape[1])
  leaf = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
          'variance': 'running_var'}[path[-1]]
  return '.'.join(path[:-1] + ['bn', leaf]), tuple(shape)


def seeded_state_dict():
  return dict(torch_name_and_shape(name, shape)
              for name, shape in inception.parameter_shapes().items())


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


class Evil:
  def __reduce__(self):
    return (os.system, ('echo unsafe',))


def test_pth_reader_refuses_other_classes_and_damaged_files(tmp_path):
  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps({'x': Evil()}))
  with pytest.raises(pth.PthError, match='asks to unpickle posix.system|asks to unpickle os'):
    pth.read_state_dict(str(path))
  truncated = tmp_path / 'truncated.pth'
  truncated.write_bytes(open(os.path.join(FIXTURES, 'tiny_state_dict_legacy.pth'),
                             'rb').read()[:200])
  with pytest.raises(pth.PthError, match='damaged or incomplete'):
    pth.read_state_dict(str(truncated))


def test_missing_or_wrong_weights_name_the_url_and_the_checksum(tmp_path):
  with pytest.raises(inception.WeightsError, match='pt_inception-2015-12-05-6726825d.pth.*'
                                                   'starts with 6726825d'):
    inception.weights_path(str(tmp_path / 'nowhere.pth'))
  wrong = tmp_path / 'wrong.pth'
  wrong.write_bytes(b'not the weights')
  with pytest.raises(inception.WeightsError, match='not that of https://github.com/mseitzer/'
                                                   'pytorch-fid.*starts with 6726825d'):
    inception.weights_path(str(wrong))
