r"""Makes tests/fixtures/inception_fixture.npz and the two tiny .pth files the Inception tests
read, with PyTorch and pytorch-fid's own model code (no Inception weights are needed).

  python3 -m venv .venv-fid && .venv-fid/bin/pip install torch==2.14.1 torchvision==0.29.1 \
      pytorch-fid==0.3.0 numpy
  .venv-fid/bin/python experiments/make_inception_fixture.py

1. pytorch-fid's InceptionV3 (output block 3: the 2048 pool3 features, with its own resize to
   299 and scaling) is built with the seeded stand-in weights of tests/seeded_inception.py in
   place of the downloaded file (its weight loader is replaced by one returning them).
2. Three fixed 32x32 RGB images (uniform in [0, 1], seed 0) go through it; the fixture holds
   them (as [-1, 1], NHWC, the project's convention) and their 2048 features.
3. A small state dict with float, int and transposed (non-contiguous) tensors is saved with
   torch.save in the zip layout and in the legacy one, with its values in the .npz beside them.
Made with torch 2.14.1, torchvision 0.29.1 and pytorch-fid 0.3.0 on the 2-core CPU machine.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
from pytorch_fid import inception as fid_inception

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', 'tests', 'fixtures')
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))
import seeded_inception  # noqa: E402  (tests/ holds the shared weight generator)


def main() -> None:
  # The structure fid_inception_v3 builds, with the seeded weights instead of the download.
  shapes = {}

  def seeded_weights(url, progress=True):
    del url, progress
    return {name: torch.from_numpy(seeded_inception.seeded_tensor(name, tuple(shape)))
            for name, shape in shapes.items()}

  probe = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  probe.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
  probe.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
  probe.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
  probe.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
  probe.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
  probe.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
  probe.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
  probe.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
  probe.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
  shapes.update({name: tuple(tensor.shape) for name, tensor in probe.state_dict().items()})
  fid_inception.load_state_dict_from_url = seeded_weights
  model = fid_inception.InceptionV3([3]).eval()

  images = np.random.default_rng(0).uniform(0, 1, (3, 3, 32, 32)).astype(np.float32)
  with torch.no_grad():
    features = model(torch.from_numpy(images))[0][:, :, 0, 0].numpy()
  np.savez_compressed(os.path.join(FIXTURES, 'inception_fixture.npz'),
                      images=images.transpose(0, 2, 3, 1) * 2 - 1, features=features,
                      torch=torch.__version__)

  tiny = {'layer.weight': torch.arange(6, dtype=torch.float32).reshape(2, 3),
          'layer.transposed': torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
          'counter': torch.tensor(7, dtype=torch.int64),
          'half': torch.tensor([0.5, -2.0], dtype=torch.float16)}
  torch.save(tiny, os.path.join(FIXTURES, 'tiny_state_dict_zip.pth'))
  torch.save(tiny, os.path.join(FIXTURES, 'tiny_state_dict_legacy.pth'),
             _use_new_zipfile_serialization=False)
  np.savez(os.path.join(FIXTURES, 'tiny_state_dict.npz'),
           **{name.replace('.', '__'): tensor.numpy() for name, tensor in tiny.items()})
  print(f'features {features.shape}, mean |f| {np.abs(features).mean():.4f}; fixtures in '
        f'{os.path.normpath(FIXTURES)}')


if __name__ == '__main__':
  main()
