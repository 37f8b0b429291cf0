"""The second stage's network [ours], shared by its sampler (priors.SecondStage, numpy) and its
training (second_stage.py, jax): one transcription of the authors' towers, with no import of
either, so that neither imports the other.

Its size [ours]: the authors' depth (daib13/TwoStageVAE, demo.py --second-depth 3), a quarter of
their width (--second-dim 1024), so that a fit costs seconds on a CPU.
"""
from __future__ import annotations

from typing import Any

import numpy as np

DEPTH = 3
WIDTH = 256


def tower(layers: dict[str, Any], x, xp=np):
  """One network of the second stage, as the authors build it (daib13/TwoStageVAE,
  network/two_stage_vae_model.py, build_encoder2/build_decoder2): DEPTH ReLU dense layers, then
  the input concatenated to the last hidden layer, then the dense heads: {'head...': output}.
  `xp` is numpy (sampling) or jax.numpy (training): one transcription."""
  hidden = x
  for index in range(DEPTH):
    kernel, bias = layers[f'hidden_{index}_kernel'], layers[f'hidden_{index}_bias']
    hidden = xp.maximum(hidden @ kernel + bias, 0)
  hidden = xp.concatenate([x, hidden], axis=-1)
  heads = [name[:-len('_kernel')] for name in layers
           if name.startswith('head') and name.endswith('_kernel')]
  return {head: hidden @ layers[f'{head}_kernel'] + layers[f'{head}_bias'] for head in heads}


def layer_shapes(latent_dim: int, heads: tuple[str, ...]) -> list[tuple[str, int, int]]:
  """(name, fan_in, fan_out) of each dense layer of a tower with `heads` over codes of size
  `latent_dim`."""
  shapes = [(f'hidden_{index}', latent_dim if index == 0 else WIDTH, WIDTH)
            for index in range(DEPTH)]
  return shapes + [(head, latent_dim + WIDTH, latent_dim) for head in heads]


def decoder_shapes(latent_dim: int) -> dict[str, tuple[int, ...]]:
  """The arrays of a saved second stage (its decoder and log gamma_z), by name."""
  shapes = {'log_gamma': ()}
  for name, fan_in, fan_out in layer_shapes(latent_dim, ('head',)):
    shapes[f'{name}_kernel'], shapes[f'{name}_bias'] = (fan_in, fan_out), (fan_out,)
  return shapes
