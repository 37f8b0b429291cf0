"""The FID Inception-v3 in flax.linen: the network pytorch-fid uses (the TensorFlow graph of
2015-12-05, ported to PyTorch: `pytorch_fid/inception.py`, `fid_inception_v3`), up to its final
average pool, whose 2048 features the standard FID compares.

Its blocks are torchvision's Inception3 with pytorch-fid's patches: the average pools of the A,
C and first E blocks leave the zero padding out of their means (TensorFlow's pooling), and the
second E block max-pools. Every conv is bias-free, followed by batch norm (eps 0.001, running
statistics) and ReLU.

Input, as pytorch-fid prepares it: images are resized to 299x299 bilinearly with PyTorch's
`F.interpolate(mode='bilinear', align_corners=False)` (sampled at (o + 0.5) * in / 299 - 0.5,
clamped to the edge, no antialiasing), here as one [299, R] matrix per axis, and scaled to
[-1, 1]. Our images are in [-1, 1] already, and a resize whose weights sum to 1 commutes with
that affine scaling, so they are resized as they are.

Weights: pytorch-fid's file pt_inception-2015-12-05-6726825d.pth (`FID_WEIGHTS_URL`), read
once into memory, checked against its full SHA-256 and size, and parsed without running code
(pth.py). Another release of the weights can be used by pinning its digest.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import urllib.request
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaegan_jax import files, folders
from vaegan_jax.metrics import pth

FID_WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')
# The full digest and size of that file. torch.hub names a file by the first 8 hex digits of its
# SHA-256 only (32 bits, which a brute-force search matches in an hour), so all 64 are checked.
FID_WEIGHTS_SHA256 = '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'
FID_WEIGHTS_BYTES = 95_628_359
MAX_WEIGHTS_BYTES = 128 * 2**20         # what a weights file may hold: a little above that one
CACHE = os.path.join(os.path.expanduser('~'), '.cache', 'vaegan_jax')
INPUT_SIZE = 299
BATCH_NORM_EPSILON = 1e-3


class WeightsError(ValueError):
  """The Inception weights are missing or not the expected file."""


# ---------------------------------------------------------------- the network
class BasicConv(nn.Module):
  """Conv (no bias) -> batch norm with running statistics -> ReLU, as torchvision's
  BasicConv2d. Padding is (rows, columns) on both sides."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel, strides=self.strides, use_bias=False,
                padding=[(self.padding[0],) * 2, (self.padding[1],) * 2], name='conv')(x)
    channels = (self.features,)
    mean = self.param('mean', nn.initializers.zeros, channels)
    variance = self.param('variance', nn.initializers.ones, channels)
    scale = self.param('scale', nn.initializers.ones, channels)
    bias = self.param('bias', nn.initializers.zeros, channels)
    return nn.relu((x - mean) * jax.lax.rsqrt(variance + BATCH_NORM_EPSILON) * scale + bias)


def _average_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3, stride 1, padding 1, the padding left out of the mean (pytorch-fid's patch)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool(x: jax.Array, strides: int = 2, padding: int = 0) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(strides, strides),
                     padding=((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1 = BasicConv(64, (1, 1), name='branch1x1')(x)
    branch5x5 = BasicConv(48, (1, 1), name='branch5x5_1')(x)
    branch5x5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(branch5x5)
    double = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    double = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(double)
    double = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(double)
    pool = BasicConv(self.pool_features, (1, 1), name='branch_pool')(_average_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, double, pool], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = BasicConv(384, (3, 3), strides=2, name='branch3x3')(x)
    double = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    double = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(double)
    double = BasicConv(96, (3, 3), strides=2, name='branch3x3dbl_3')(double)
    return jnp.concatenate([branch3x3, double, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    branch1x1 = BasicConv(192, (1, 1), name='branch1x1')(x)
    branch7x7 = BasicConv(c7, (1, 1), name='branch7x7_1')(x)
    branch7x7 = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(branch7x7)
    branch7x7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(branch7x7)
    double = BasicConv(c7, (1, 1), name='branch7x7dbl_1')(x)
    for index, (features, kernel, padding) in enumerate(
        [(c7, (7, 1), (3, 0)), (c7, (1, 7), (0, 3)), (c7, (7, 1), (3, 0)),
         (192, (1, 7), (0, 3))], start=2):
      double = BasicConv(features, kernel, padding=padding, name=f'branch7x7dbl_{index}')(double)
    pool = BasicConv(192, (1, 1), name='branch_pool')(_average_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, double, pool], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = BasicConv(192, (1, 1), name='branch3x3_1')(x)
    branch3x3 = BasicConv(320, (3, 3), strides=2, name='branch3x3_2')(branch3x3)
    branch7x7 = BasicConv(192, (1, 1), name='branch7x7x3_1')(x)
    branch7x7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(branch7x7)
    branch7x7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(branch7x7)
    branch7x7 = BasicConv(192, (3, 3), strides=2, name='branch7x7x3_4')(branch7x7)
    return jnp.concatenate([branch3x3, branch7x7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
  """max_pool: the second E block's pool (pytorch-fid's FIDInceptionE_2), else the padding-free
  average pool (FIDInceptionE_1)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1 = BasicConv(320, (1, 1), name='branch1x1')(x)
    branch3x3 = BasicConv(384, (1, 1), name='branch3x3_1')(x)
    branch3x3 = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(branch3x3),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(branch3x3)], axis=-1)
    double = BasicConv(448, (1, 1), name='branch3x3dbl_1')(x)
    double = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(double)
    double = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(double),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(double)], axis=-1)
    pooled = _max_pool(x, strides=1, padding=1) if self.max_pool else _average_pool_3x3(x)
    pool = BasicConv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([branch1x1, branch3x3, double, pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """[N, 299, 299, 3] in [-1, 1] -> pool3 features [N, 2048] (the final average pool)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = BasicConv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool(x)
    x = BasicConv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool(x)
    for name, pool_features in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
      x = InceptionA(pool_features, name=name)(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, channels in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                           ('Mixed_6e', 192)):
      x = InceptionC(channels, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))


# ---------------------------------------------------------------- input
@functools.lru_cache(maxsize=8)
def bilinear_matrix(size: int, output: int = INPUT_SIZE) -> np.ndarray:
  """[output, size]: PyTorch's bilinear interpolation with align_corners=False along one axis."""
  source = np.maximum((np.arange(output) + 0.5) * size / output - 0.5, 0.0)
  low = np.minimum(np.floor(source).astype(int), size - 1)
  high = np.minimum(low + 1, size - 1)
  fraction = source - low
  matrix = np.zeros((output, size), np.float32)
  np.add.at(matrix, (np.arange(output), low), 1.0 - fraction)
  np.add.at(matrix, (np.arange(output), high), fraction)
  return matrix


def resize_to_input(images: jax.Array) -> jax.Array:
  """[N, H, W, C] in [-1, 1] -> [N, 299, 299, 3]: pytorch-fid's resize; grey repeated."""
  rows, cols = bilinear_matrix(images.shape[1]), bilinear_matrix(images.shape[2])
  resized = jnp.einsum('oh,nhwc,pw->nopc', rows, images.astype(jnp.float32), cols)
  return jnp.repeat(resized, 3, axis=-1) if resized.shape[-1] == 1 else resized


@functools.partial(jax.jit, static_argnums=0)
def _features(model: FIDInceptionV3, params: Any, images: jax.Array) -> jax.Array:
  return model.apply({'params': params}, resize_to_input(images))


# ---------------------------------------------------------------- weights
def params_from_state_dict(state: dict[str, np.ndarray]) -> dict[str, Any]:
  """pytorch-fid's state dict -> FIDInceptionV3's params: conv weights [O, I, kh, kw] to flax's
  [kh, kw, I, O]; bn weight, bias, running_mean and running_var to scale, bias, mean and
  variance. The classifier (fc) and num_batches_tracked are not used."""
  params: dict[str, Any] = {}
  renames = {'bn.weight': 'scale', 'bn.bias': 'bias', 'bn.running_mean': 'mean',
             'bn.running_var': 'variance'}
  for key, value in state.items():
    if key.startswith('fc.') or key.endswith('.num_batches_tracked'):
      continue
    parts = key.split('.')
    if parts[-2:] == ['conv', 'weight']:
      names, value = parts[:-1] + ['kernel'], np.transpose(value, (2, 3, 1, 0))
    elif '.'.join(parts[-2:]) in renames:
      names = parts[:-2] + [renames['.'.join(parts[-2:])]]
    else:
      raise WeightsError(f'Unexpected tensor {key!r} in the Inception weights: the file is not '
                         f'pytorch-fid\'s FID Inception ({FID_WEIGHTS_URL}).')
    node = params
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = jnp.asarray(value, jnp.float32)
  return params


def weights_bytes(path: str | None = None, sha256: str | None = None,
                  download: bool = True) -> tuple[str, bytes]:
  """(where, the bytes of the weights file): `path` if given, else the cached download (fetched
  once when the network allows). The bytes are read once and checked against the full SHA-256
  (`sha256`, else pytorch-fid's FID_WEIGHTS_SHA256) before anything parses them; the same bytes
  are then parsed, so the file cannot be swapped between the check and the read. A WeightsError
  says what to do."""
  expected = (sha256 or FID_WEIGHTS_SHA256).lower()
  if not re.fullmatch('[0-9a-f]{64}', expected):
    raise WeightsError(f'The pinned SHA-256 {sha256!r} is not 64 hex digits; give the full '
                       f'digest of your weights file (sha256sum FILE).')
  what = (f'SHA-256 {expected}' + ('' if sha256 else f', {FID_WEIGHTS_BYTES:,} bytes'))
  target = path or os.path.join(CACHE, os.path.basename(FID_WEIGHTS_URL))
  if path is None and download and not os.path.exists(target):
    return target, _download(target, expected, what)
  try:
    data = files.read_regular_file(target, MAX_WEIGHTS_BYTES)
  except FileNotFoundError:
    raise WeightsError(f'No Inception weights at {target}. Download {FID_WEIGHTS_URL} ({what}) '
                       f'and pass its path.') from None
  except (OSError, files.UnsafeFile) as error:
    raise WeightsError(f'Cannot read the Inception weights {target}: {error}') from None
  _check_digest(data, expected, what, f'{target} ')
  return target, data


def check_weights_path(path: str | None) -> None:
  """A WeightsError at once where a weights file is named and is not a readable regular file:
  said before data, runs or steps are loaded, not after."""
  if not path:
    return
  try:
    with files.open_regular(os.path.expanduser(path)):
      pass
  except FileNotFoundError:
    raise WeightsError(f'No Inception weights at {path}. Download {FID_WEIGHTS_URL} '
                       f'(SHA-256 {FID_WEIGHTS_SHA256}) and pass its path.') from None
  except (OSError, files.UnsafeFile) as error:
    raise WeightsError(f'Cannot read the Inception weights {path}: {error}') from None


def _check_digest(data: bytes, expected: str, what: str, where: str) -> None:
  digest = hashlib.sha256(data).hexdigest()
  if digest != expected:
    raise WeightsError(
        f'{where}has SHA-256 {digest} ({len(data):,} bytes), not the expected {what} of '
        f'{FID_WEIGHTS_URL}: it is another file or damaged, and was not read. Download it again; '
        f'for another release of the weights, pin its digest (--inception_sha256).')


def _download(target: str, expected: str, what: str) -> bytes:
  """The weights fetched into memory (at most MAX_WEIGHTS_BYTES), checked, then cached under a
  unique temporary name renamed into place: nothing unchecked is ever cached."""
  try:
    with urllib.request.urlopen(FID_WEIGHTS_URL, timeout=60) as response:
      data = response.read(MAX_WEIGHTS_BYTES + 1)
  except OSError as error:
    raise WeightsError(
        f'Cannot download the FID Inception weights ({type(error).__name__}: {error}). '
        f'Download {FID_WEIGHTS_URL} yourself ({what}) and pass its path with '
        f'--inception_weights.') from error
  _check_digest(data, expected, what, 'The download ')
  os.makedirs(CACHE, exist_ok=True)
  folders.write_atomically(target, lambda file: file.write(data))
  return data


def load_params(path: str | None = None, sha256: str | None = None) -> tuple[str, Any]:
  """(where, FIDInceptionV3's params) from pytorch-fid's weights file, checked by weights_bytes
  and read without running anything it holds (pth.py)."""
  where, data = weights_bytes(path, sha256)
  try:
    return where, params_from_state_dict(pth.read_state_dict(data, MAX_WEIGHTS_BYTES))
  except pth.PthError as error:
    raise WeightsError(f'{where}: {error}') from None


def features(params: Any, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
  """pool3 features [N, 2048] of images [N, H, W, C] in [-1, 1]."""
  model = FIDInceptionV3()
  return np.concatenate([np.asarray(_features(model, params, jnp.asarray(
      images[start:start + batch_size]))) for start in range(0, len(images), batch_size)])

