"""Seeded stand-in weights for the FID Inception network, shared by the fixture script
(experiments/make_inception_fixture.py, which runs pytorch-fid's model with them) and the test
(which runs vaegan_jax's port with them): each tensor is drawn from a generator seeded by its
name, so both sides rebuild it from the name and the shape alone. The scales keep activations of
order one through the 90-odd layers, so the comparison tests every layer."""
from __future__ import annotations

import zlib

import numpy as np


def seeded_tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
  """The tensor `name` of PyTorch shape `shape`, float32 (int64 for counters)."""
  rng = np.random.default_rng([7, zlib.crc32(name.encode())])
  leaf = name.rsplit('.', 1)[-1]
  if leaf == 'num_batches_tracked':
    return np.zeros(shape, np.int64)
  if name.endswith('conv.weight') or name == 'fc.weight':
    fan_in = int(np.prod(shape[1:]))
    return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  if leaf in ('weight', 'running_var'):                   # batch-norm scale and variance
    return rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
  return (0.1 * rng.normal(size=shape)).astype(np.float32)  # shifts, running means, fc bias
