r"""An attribute predictor: a small CNN trained on the training split's attributes, a classifier
of binary ones, or a regressor of real-valued ones (LFW's scores, the paper's attribute table).

  python -m vaegan_jax.metrics.attribute_predictor --data_dir=DATA --name=synthetic --resolution=32 \
      --out=runs/predictor                                  # or: vaegan-attribute-predictor

It judges generated images (the paper's attribute-similarity protocol, after Yan et al.'s
Attribute2Image) and attribute-vector edits. It prints and saves (out/predictor.json) its accuracy
per attribute on the test split (a regressor: its RMSE and correlation); the parameters go to
out/predictor.msgpack. Attributes that never vary in the training split are left out of the loss
and reported as such.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from flax import serialization

from vaegan_jax import console, folders, ranges
from vaegan_jax.data import input_pipeline, preprocess


class AttributeCNN(nn.Module):
  """[B, R, R, C] images in [-1, 1] -> [B, A] attribute logits, or with hidden_only the [B,
  hidden] features of the layer below them (the domain feature space of extractors.py)."""
  num_attributes: int
  channels: tuple[int, ...] = (32, 64, 128)
  hidden: int = 256

  @nn.compact
  def __call__(self, images: jax.Array, hidden_only: bool = False) -> jax.Array:
    x = images
    for features in self.channels:
      x = nn.relu(nn.Conv(features, (3, 3), strides=(2, 2))(x))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return x if hidden_only else nn.Dense(self.num_attributes)(x)


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A trained predictor: apply it with `probabilities` (a classifier) or `predicted_attributes`."""
  attribute_names: tuple[str, ...]
  trained: np.ndarray            # [A] bool: attributes that varied in training (the rest: chance)
  params: Any
  image_shape: tuple[int, int, int]
  kind: str = 'binary'           # 'binary': a classifier; 'real': a regressor of the scores

  def probabilities(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Images [N, R, R, C], uint8 or float in [-1, 1] -> P(attribute) [N, A] (a classifier)."""
    if self.kind != 'binary':
      raise ValueError('This predictor regresses real-valued attributes: it gives no '
                       'probabilities; use predicted_attributes.')
    return self._batched(_probabilities, images, batch_size)

  def predicted_attributes(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Images -> predicted attributes [N, A] on the scale of a conditional model's y: 2 P - 1
    for binary ones (Attribute2Image's coding), the regressed scores for real-valued ones."""
    if self.kind == 'binary':
      return 2 * self.probabilities(images, batch_size) - 1
    return self._batched(_outputs, images, batch_size)

  def hidden_features(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Images [N, R, R, C], uint8 or float in [-1, 1] -> the hidden layer's features [N, 256]."""
    return self._batched(_hidden_features, images, batch_size)

  def _batched(self, function, images: np.ndarray, batch_size: int) -> np.ndarray:
    if images.dtype == np.uint8:
      images = preprocess.to_model_range(images)
    model = AttributeCNN(len(self.attribute_names))
    return np.concatenate([np.asarray(function(model, self.params, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


@functools.partial(jax.jit, static_argnums=0)
def _probabilities(model, params, images):
  return jax.nn.sigmoid(model.apply({'params': params}, images))


@functools.partial(jax.jit, static_argnums=0)
def _outputs(model, params, images):
  return model.apply({'params': params}, images)


@functools.partial(jax.jit, static_argnums=0)
def _hidden_features(model, params, images):
  return model.apply({'params': params}, images, hidden_only=True)


def masked_bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean sigmoid cross-entropy over the examples and the attributes in `mask` ([A] bool)."""
  per_attribute = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
  return jnp.sum(per_attribute * mask) / (logits.shape[0] * jnp.maximum(jnp.sum(mask), 1))


def masked_squared_error(outputs: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared error over the examples and the attributes in `mask` ([A] bool)."""
  per_attribute = jnp.square(outputs - targets.astype(outputs.dtype))
  return jnp.sum(per_attribute * mask) / (outputs.shape[0] * jnp.maximum(jnp.sum(mask), 1))


def varying(attributes: np.ndarray) -> np.ndarray:
  """[A] bool: the attributes (columns of [N, A]) that take more than one value."""
  return np.asarray(np.ptp(attributes.astype(np.float32), axis=0) > 0)


def learnable(train_split: input_pipeline.PreparedSplit, sample_size: int = 5000) -> np.ndarray:
  """[A] bool: the split's attributes that vary over its first `sample_size` images, the ones a
  predictor can learn."""
  return varying(train_split.read(np.arange(min(len(train_split), sample_size)))['attributes'])


def train_predictor(train_split: input_pipeline.PreparedSplit, *, steps: int = 1500,
                    batch_size: int = 64, learning_rate: float = 1e-3, seed: int = 0
                    ) -> Predictor:
  """Adam on random batches with per-example flips (attributes are left-right symmetric): the
  cross-entropy of binary attributes, the squared error of real-valued ones."""
  names, kind = train_split.attribute_names, train_split.attribute_kind
  trained = learnable(train_split)
  loss_fn = masked_bce if kind == 'binary' else masked_squared_error
  model = AttributeCNN(len(names))
  params = model.init(jax.random.PRNGKey(seed),
                      jnp.zeros((1, *train_split.image_shape), jnp.float32))['params']
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(params)
  mask = jnp.asarray(trained)

  @jax.jit
  def step(params, opt_state, images, labels):
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(model.apply({'params': p}, images), labels, mask))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  load = input_pipeline.training_batches(train_split, seed=seed, global_batch_size=batch_size,
                                         local_devices=1, flip='example')
  progress = console.Progress('Training the attribute predictor', steps, unit='steps')
  for batch_index in range(steps):
    batch = input_pipeline.to_model_input(load(batch_index))
    params, opt_state, _ = step(params, opt_state, batch['image'][0], batch['attributes'][0])
    progress.advance()
  progress.finish()
  return Predictor(attribute_names=names, trained=trained, params=jax.device_get(params),
                   image_shape=train_split.image_shape, kind=kind)


def accuracy(predictor: Predictor, split: input_pipeline.PreparedSplit, limit: int = 10_000
             ) -> dict[str, float | None]:
  """Test accuracy per attribute of a classifier; None for attributes the predictor was not
  trained on."""
  data = split.read(np.arange(min(limit, len(split))))
  correct = (predictor.probabilities(data['image']) > 0.5) == data['attributes']
  return {name: float(correct[:, index].mean()) if predictor.trained[index] else None
          for index, name in enumerate(predictor.attribute_names)}


def regression_errors(predictor: Predictor, split: input_pipeline.PreparedSplit,
                      limit: int = 10_000) -> dict[str, dict[str, float] | None]:
  """A regressor's test RMSE and Pearson correlation per attribute; None where not trained."""
  data = split.read(np.arange(min(limit, len(split))))
  predicted, targets = predictor.predicted_attributes(data['image']), data['attributes']
  errors = {}
  for index, name in enumerate(predictor.attribute_names):
    if not predictor.trained[index]:
      errors[name] = None
      continue
    rmse = float(np.sqrt(np.mean(np.square(predicted[:, index] - targets[:, index]))))
    spread = np.std(predicted[:, index]) * np.std(targets[:, index])
    correlation = float(np.mean((predicted[:, index] - predicted[:, index].mean()) * (
        targets[:, index] - targets[:, index].mean())) / spread) if spread > 0 else 0.0
    errors[name] = {'rmse': rmse, 'correlation': correlation}
  return errors


def test_scores(predictor: Predictor, split: input_pipeline.PreparedSplit) -> dict[str, Any]:
  """What the predictor's JSON reports: test accuracy (classifier) or errors (regressor)."""
  if predictor.kind == 'binary':
    return {'test_accuracy': accuracy(predictor, split)}
  return {'test_errors': regression_errors(predictor, split)}


def save(predictor: Predictor, folder: folders.Folder, numbers: dict) -> None:
  """predictor.msgpack, then predictor.json (which marks it complete), each written whole."""
  params = serialization.msgpack_serialize(jax.tree.map(np.asarray, predictor.params))
  folder.write_atomically('predictor.msgpack', lambda file: file.write(params))
  meta = {'attribute_names': list(predictor.attribute_names), 'kind': predictor.kind,
          'trained': predictor.trained.tolist(), 'image_shape': list(predictor.image_shape),
          **numbers}
  folder.write_atomically('predictor.json', lambda file: file.write(
      json.dumps(meta, indent=2).encode()))


def load(out_dir: str) -> Predictor:
  """A predictor saved by `save`; a FileNotFoundError saying how to train one if absent."""
  meta_path = os.path.join(out_dir, 'predictor.json')
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f'No attribute predictor in {out_dir}: train one with '
                            f'`{console.command("vaegan-attribute-predictor")} '
                            f'--out={out_dir} ...`.')
  meta = json.load(open(meta_path))
  with open(os.path.join(out_dir, 'predictor.msgpack'), 'rb') as file:
    params = serialization.msgpack_restore(file.read())
  return Predictor(attribute_names=tuple(meta['attribute_names']),
                   trained=np.array(meta['trained'], bool), params=params,
                   image_shape=tuple(meta['image_shape']), kind=meta.get('kind', 'binary'))


def define_flags() -> None:
  flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'Where the dataset is prepared.')
  flags.DEFINE_string('name', 'synthetic', 'Prepared dataset name.')
  flags.DEFINE_integer('resolution', 32, 'Prepared resolution.',
                       lower_bound=ranges.RESOLUTIONS[0], upper_bound=ranges.RESOLUTIONS[1])
  flags.DEFINE_enum('channels', '3', ['1', '3'], 'Prepared channels.')
  flags.DEFINE_string('train_split', 'train+validation', 'Split to train on.')
  flags.DEFINE_string('test_split', 'test', 'Split to measure accuracy on.')
  flags.DEFINE_integer('steps', 1500, 'Training steps of batch 64.',
                       lower_bound=ranges.STEP_COUNTS[0], upper_bound=ranges.STEP_COUNTS[1])
  flags.DEFINE_string('out', None, 'Folder for predictor.msgpack and predictor.json.',
                      required=True)


def main(argv: list[str]) -> None:
  del argv
  args = flags.FLAGS
  data_dir = os.path.expanduser(args.data_dir)
  open_split = lambda split: input_pipeline.open_prepared(
      data_dir, args.name, args.resolution, int(args.channels), split)
  predictor = train_predictor(open_split(args.train_split), steps=args.steps)
  scores = test_scores(predictor, open_split(args.test_split))
  save(predictor, folders.Folder(args.out, 'the output folder', '--out').make(),
       {**scores, 'steps': args.steps})
  for name, value in next(iter(scores.values())).items():
    if isinstance(value, dict):
      print(f'{name:20s} RMSE {value["rmse"]:.3f}  correlation {value["correlation"]:.3f}')
    elif value is not None:
      print(f'{name:20s} {value:.3f}')


def run() -> None:
  """Console script `vaegan-attribute-predictor`."""
  define_flags()
  console.run_main('vaegan-attribute-predictor', main,
                   (ValueError, FileNotFoundError, folders.FolderError))


if __name__ == '__main__':
  run()
