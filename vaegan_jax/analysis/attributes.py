"""Attribute arithmetic in latent space (the paper's Fig. 5) and attribute-similarity metrics.

All pure numpy on small arrays: z [N, L] latent codes, attributes [N, A] bool (real-valued
scores count as present where positive, `presence`).
"""
from __future__ import annotations

import numpy as np


def presence(attributes: np.ndarray) -> np.ndarray:
  """[N, A] bool: binary attributes as they are; real-valued scores (LFW's, which are attribute
  classifiers' margins) present where positive."""
  attributes = np.asarray(attributes)
  return attributes if attributes.dtype == np.bool_ else attributes > 0


def attribute_vectors(latents: np.ndarray, attributes: np.ndarray) -> np.ndarray:
  """[A, L]: mean z of the images with each attribute minus mean z of those without.

  Raises ValueError naming an attribute that every image has or none has (no vector exists).
  """
  attributes = presence(attributes)
  present = attributes.sum(axis=0)
  degenerate = np.flatnonzero((present == 0) | (present == len(attributes)))
  if degenerate.size:
    raise ValueError(f'Attribute column(s) {degenerate.tolist()} are present in all or none of '
                     f'the {len(attributes)} encoded images; encode more images.')
  with_mean = attributes.T.astype(np.float64) @ latents / present[:, None]
  without_mean = (~attributes).T.astype(np.float64) @ latents / (len(attributes) - present)[:, None]
  return (with_mean - without_mean).astype(np.float32)


def strength_sweep(latent: np.ndarray, vector: np.ndarray, strengths: np.ndarray) -> np.ndarray:
  """[S, L]: z + a * v for each strength a."""
  return latent[None] + np.asarray(strengths, np.float32)[:, None] * vector[None]


def interpolate(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
  """[steps, L]: points on the straight line from start to end, both included."""
  weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
  return (1 - weights) * start[None] + weights * end[None]


def cosine_similarity(requested: np.ndarray, predicted: np.ndarray) -> float:
  """Mean over rows of the cosine between requested and predicted attribute vectors [N, A]
  (in the +-1 coding of Attribute2Image's protocol)."""
  dot = np.sum(requested * predicted, axis=1)
  norms = np.linalg.norm(requested, axis=1) * np.linalg.norm(predicted, axis=1)
  return float(np.mean(dot / np.maximum(norms, 1e-12)))


def mean_squared_error(requested: np.ndarray, predicted: np.ndarray) -> float:
  """Mean over rows and attributes of the squared difference."""
  return float(np.mean((np.asarray(requested) - np.asarray(predicted)) ** 2))


def edit_success(before: np.ndarray, added: np.ndarray, subtracted: np.ndarray,
                 present: np.ndarray) -> dict[str, float]:
  """How often an attribute edit moves a predictor as intended, over N images.

  before, added, subtracted: [N] predicted attributes on y's scale (2 P(attribute) - 1, or a
  regressed score), positive meaning present, for decode(z), decode(z + v) and decode(z - v);
  present: [N] bool, the true label of each image.
    moved_up_when_added       fraction with added > before
    moved_down_when_subtracted fraction with subtracted < before
    gained_when_absent        of the images without it, the fraction predicted with it (> 0)
                              after adding (NaN if every image has it)
    lost_when_present         of the images with it, the fraction predicted without it after
                              subtracting (NaN if none has it)
  """
  present = np.asarray(present, bool)
  fraction = lambda mask: float(np.mean(mask)) if np.size(mask) else float('nan')
  return {'moved_up_when_added': fraction(added > before),
          'moved_down_when_subtracted': fraction(subtracted < before),
          'gained_when_absent': fraction(added[~present] > 0),
          'lost_when_present': fraction(subtracted[present] <= 0)}
