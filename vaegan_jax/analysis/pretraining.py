r"""Unsupervised pretraining for a supervised task (the paper's section 4.3), made measurable.

  python -m vaegan_jax.analysis.pretraining --run=VAE/GAN=runs/vaegan --run=VAE=runs/vae \
      --labels=100,1000,10000,all --seeds=3 --out=pretraining       # or: vaegan-pretraining

The paper says that a VAE/GAN used as unsupervised pretraining, then trained on few labels, did
not reach the state of the art, and gives no numbers. This command measures where it stands. The
task is the runs' dataset's binary attributes (CelebA's 40, or those of any prepared dataset;
real-valued scores such as LFW's count as present where positive), scored as the mean test
accuracy over the attributes that vary in the training split. For each
label budget (a seeded random subset of the training split) and seed it trains:

  probe_mu             a linear layer on the frozen encoder's mu (eval mode);
  probe_discriminator  a linear layer on the frozen discriminator's features at --layer
                       (default: the run's Dis_l, loss.feature_layer), flattened;
  finetune             the encoder, from the run's weights, with a linear layer on mu, end to end;
  scratch              the same encoder and layer from a random init (once per architecture);

each with the same Adam budget (--steps batches of --batch_size, --learning_rate), the seed
choosing the labels, the initialisation and the batch order. A run without an encoder (a GAN)
gets only the discriminator probe, one without a discriminator (a VAE) only the encoder methods.
The majority answer of each budget's labels is the floor. Writes pretraining.json (every
accuracy, their mean and spread over the seeds) and pretraining.png (accuracy against labels).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from PIL import Image

from vaegan_jax import console, folders, ranges
from vaegan_jax.analysis import attributes, plots, runs
from vaegan_jax.data import input_pipeline, preprocess
from vaegan_jax.metrics import attribute_predictor

# ---------------------------------------------------------------- the networks
class EncoderBody(nn.Module):
  """images -> the encoder's mu [B, L]; frozen: no gradient, batch statistics as trained."""
  encoder: nn.Module
  frozen: bool

  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    mu, _ = self.encoder(images, train=train and not self.frozen)
    return jax.lax.stop_gradient(mu) if self.frozen else mu


class DiscriminatorBody(nn.Module):
  """images -> the frozen discriminator's features at `layer`, flattened [B, F]."""
  discriminator: nn.Module
  layer: str

  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    del train                        # always eval mode: the probe reads fixed features
    features = self.discriminator(images, train=False)[1][self.layer]
    return jax.lax.stop_gradient(features.reshape(features.shape[0], -1).astype(jnp.float32))


class Classifier(nn.Module):
  """images [B, R, R, C] in [-1, 1] -> [B, A] attribute logits: a linear head on `body`."""
  body: nn.Module
  num_outputs: int

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    return nn.Dense(self.num_outputs, name='head')(self.body(images, train))


# ---------------------------------------------------------------- the math
def mean_accuracy(logits: np.ndarray, labels: np.ndarray, varying: np.ndarray) -> float:
  """Mean over the attributes in `varying` ([A] bool) of the accuracy of logits > 0."""
  correct = (np.asarray(logits) > 0) == np.asarray(labels, bool)
  return float(correct[:, varying].mean())


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray,
                      varying: np.ndarray) -> float:
  """The mean accuracy of answering each attribute's more frequent training value (ties: True)."""
  majority = np.asarray(train_labels, bool).mean(axis=0) >= 0.5
  return mean_accuracy(np.where(majority, 1.0, -1.0)[None].repeat(len(test_labels), 0),
                       test_labels, varying)


def labelled_subset(num_train: int, budget: int, seed: int) -> np.ndarray:
  """The `budget` training indices a seed labels: a prefix of a seeded permutation, so that a
  larger budget holds every smaller one of the same seed."""
  return np.random.default_rng(seed).permutation(num_train)[:budget]


def parse_budgets(specs: Sequence[str], num_train: int) -> list[int]:
  """'100', '1000', 'all' -> label counts, ascending; a ValueError for a count beyond the split."""
  budgets = set()
  for spec in specs:
    count = num_train if spec == 'all' else int(spec)
    if not 0 < count <= num_train:
      raise ValueError(f'--labels={spec}: the training split has {num_train} labelled images; '
                       f'give counts from 1 to {num_train}, or all.')
    budgets.add(count)
  return sorted(budgets)


# ---------------------------------------------------------------- training one classifier
@dataclasses.dataclass(frozen=True)
class Budget:
  """Same for every method: the optimizer and the number of batches."""
  steps: int = 500
  batch_size: int = 64
  learning_rate: float = 1e-3


def train_classifier(model: Classifier, variables: dict[str, Any],
                     read: Callable[[np.ndarray], dict[str, np.ndarray]], labelled: np.ndarray,
                     varying: np.ndarray, budget: Budget, seed: int) -> dict[str, Any]:
  """Adam on the head (and an unfrozen body) from `variables`, on batches of the `labelled`
  indices (`read` gives their uint8 images and bool attributes) drawn in a seeded order.
  Returns the trained variables."""
  optimizer = optax.adam(budget.learning_rate)
  params, others = variables['params'], {k: v for k, v in variables.items() if k != 'params'}
  opt_state = optimizer.init(params)
  mask = jnp.asarray(varying)

  @jax.jit
  def step(params, others, opt_state, images, labels):
    def loss_fn(params):
      logits, updated = model.apply({'params': params, **others}, images, train=True,
                                    mutable=list(others))
      return attribute_predictor.masked_bce(logits, labels, mask), updated
    (_, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), {**others, **updated}, opt_state

  rng = np.random.default_rng(seed)
  batch_size = min(budget.batch_size, len(labelled))
  order = np.empty(0, np.int64)
  for _ in range(budget.steps):
    if len(order) < batch_size:            # epochs of the labelled set, each shuffled afresh
      order = np.concatenate([order, rng.permutation(labelled)])
    batch, order = read(np.sort(order[:batch_size])), order[batch_size:]
    params, others, opt_state = step(params, others, opt_state,
                                     preprocess.to_model_range(batch['image']),
                                     batch['attributes'])
  return {'params': params, **others}


@functools.partial(jax.jit, static_argnums=0)
def _logits(model: Classifier, variables: dict[str, Any], images: jax.Array) -> jax.Array:
  return model.apply(variables, preprocess.to_model_range(images), train=False)


def predict_logits(model: Classifier, variables: dict[str, Any], images: np.ndarray,
                batch_size: int = 500) -> np.ndarray:
  return np.concatenate([np.asarray(_logits(model, variables, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


# ---------------------------------------------------------------- the methods
def network_variables(network: Any) -> dict[str, Any]:
  return {'params': network.params, 'batch_stats': network.batch_stats}


def method_model(run: runs.Run, method: str, num_outputs: int, layer: str
                 ) -> tuple[Classifier, dict[str, Any] | None]:
  """The classifier of `method` on `run`, and the run's trained variables of its body (None for
  scratch, whose body starts from a random init)."""
  networks, trained = run.networks, run.state
  if method == 'probe_discriminator':
    body = DiscriminatorBody(networks.discriminator, layer)
    return Classifier(body, num_outputs), network_variables(trained.discriminator)
  body = EncoderBody(networks.encoder, frozen=method == 'probe_mu')
  return Classifier(body, num_outputs), (
      None if method == 'scratch' else network_variables(trained.encoder))


def initial_variables(model: Classifier, body: dict[str, Any] | None, image_shape: Sequence[int],
                      seed: int) -> dict[str, Any]:
  """A random init of `model` (head, and body where `body` is None), with the trained body's
  variables put in place of the random ones."""
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((2, *image_shape)), train=False)
  variables = jax.tree.map(jnp.asarray, dict(variables))
  if body is None:
    return variables
  # The body's variables sit under 'body/<network>' (its one submodule) in the classifier.
  inner = lambda tree: next(iter(tree['body'].values()))
  for collection, values in body.items():
    if collection in variables:
      check = jax.tree.map(lambda a, b: a.shape == b.shape, inner(variables[collection]), values)
      assert all(jax.tree.leaves(check)), 'the run\'s variables do not fit its own network'
      name = next(iter(variables[collection]['body']))
      variables[collection] = {**variables[collection], 'body': {name: values}}
  return variables


def methods_of(run: runs.Run) -> list[str]:
  """The methods a run can be pretraining for: its encoder's and its discriminator's."""
  found = []
  if run.networks.encoder is not None:
    found += ['probe_mu', 'finetune']
  if run.networks.discriminator is not None:
    found.append('probe_discriminator')
  return found


def encoder_architecture(run: runs.Run) -> tuple | None:
  """What fixes a run's encoder shapes (None without one): runs that share it share scratch."""
  model = run.config.model
  if run.networks.encoder is None:
    return None
  return (tuple(model.encoder_channels), model.encoder_hidden_features, model.latent_dim,
          model.resolution, model.image_channels, model.compute_dtype)


def split_attributes(split: input_pipeline.PreparedSplit, chunk: int = 10_000) -> np.ndarray:
  """Every example's attributes [N, A] bool, read in chunks (the images are dropped)."""
  return np.concatenate([split.read(np.arange(start, min(start + chunk, len(split))))['attributes']
                         for start in range(0, len(split), chunk)])


def present(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A batch whose attributes are bool labels (real-valued scores: present where positive)."""
  return {**batch, 'attributes': attributes.presence(batch['attributes'])}


def check_runs(loaded: dict[str, runs.Run]) -> None:
  """One dataset, no conditional run (its encoder would need the labels it is to predict)."""
  for label, run in loaded.items():
    if run.condition_on:
      raise ValueError(f'{label} ({run.workdir}) is a conditional run: its encoder takes the '
                       f'attributes as input. Pretrain with an unconditional run.')
  datasets = {(run.config.data.name, run.config.model.resolution) for run in loaded.values()}
  if len(datasets) > 1:
    raise ValueError(f'The runs were trained on different datasets ({sorted(datasets)}); '
                     f'compare runs of one dataset.')


def measure(loaded: dict[str, runs.Run], train_split: input_pipeline.PreparedSplit,
            test_split: input_pipeline.PreparedSplit, label_specs: Sequence[str], seeds: int,
            budget: Budget, layer: str | None, num_test: int) -> dict[str, Any]:
  """Every (run, method, label budget, seed)'s test accuracy; see the module docstring."""
  check_runs(loaded)
  started = time.perf_counter()
  budgets = parse_budgets(label_specs, len(train_split))
  test = present(test_split.read(np.arange(min(num_test, len(test_split)))))
  names = train_split.attribute_names
  train_labels = attributes.presence(split_attributes(train_split))
  varying = attribute_predictor.varying(train_labels)
  if not varying.any():
    raise ValueError(f'No attribute of {train_split.path} varies: there is nothing to predict.')
  read_train = lambda indices: present(train_split.read(indices))

  # Each run's methods; scratch once per encoder architecture, under the first run that has it.
  jobs, architectures = [], set()
  for label, run in loaded.items():
    for method in methods_of(run):
      jobs.append((label, method))
    architecture = encoder_architecture(run)
    if architecture is not None and architecture not in architectures:
      architectures.add(architecture)
      jobs.append((label, 'scratch'))

  rows, majority = [], {}
  for count in budgets:
    subsets = [labelled_subset(len(train_split), count, seed) for seed in range(seeds)]
    majority[count] = [majority_accuracy(train_labels[subset], test['attributes'], varying)
                       for subset in subsets]
    for label, method in jobs:
      run = loaded[label]
      model, body = method_model(run, method, len(names),
                                 layer or run.config.loss.feature_layer)
      accuracies = []
      for seed, subset in enumerate(subsets):
        variables = initial_variables(model, body, train_split.image_shape, seed)
        variables = train_classifier(model, variables, read_train, subset, varying, budget,
                                     seed)
        accuracies.append(mean_accuracy(predict_logits(model, variables, test['image']),
                                        test['attributes'], varying))
      rows.append({'run': 'random init' if method == 'scratch' else label,
                   'architecture_of': label, 'method': method, 'labels': count,
                   'accuracy_mean': float(np.mean(accuracies)),
                   'accuracy_std': float(np.std(accuracies)), 'accuracies': accuracies})
      print(f'{rows[-1]["run"]:>12s} {method:20s} {count:7d} labels: '
            f'{rows[-1]["accuracy_mean"]:.4f} +- {rows[-1]["accuracy_std"]:.4f}', flush=True)
  return {
      'task': {'dataset': train_split.path, 'train_split': train_split.split,
               'test_split': test_split.split, 'num_train': len(train_split),
               'num_test': len(test['image']),
               'attributes': [name for name, keep in zip(names, varying) if keep],
               'metric': 'mean test accuracy over the attributes that vary',
               'labels': ('the binary attributes' if train_split.attribute_kind == 'binary' else
                          'the real-valued scores, present where positive')},
      'settings': {'steps': budget.steps, 'batch_size': budget.batch_size,
                   'learning_rate': budget.learning_rate, 'optimizer': 'adam', 'seeds': seeds,
                   'discriminator_layer': {label: layer or run.config.loss.feature_layer
                                           for label, run in loaded.items()
                                           if run.networks.discriminator is not None}},
      'runs': runs.provenance(loaded),
      'majority': [{'labels': count, 'accuracy_mean': float(np.mean(values)),
                    'accuracy_std': float(np.std(values))} for count, values in majority.items()],
      'rows': rows,
      'seconds': time.perf_counter() - started,
  }


def chart(table: dict[str, Any]) -> np.ndarray:
  """Mean accuracy against the number of labels (log scale), one line per run and method."""
  curves: dict[str, tuple[list[float], list[float]]] = {}
  for row in table['rows']:
    xs, ys = curves.setdefault(f'{row["run"]} {row["method"]}', ([], []))
    xs.append(row['labels'])
    ys.append(row['accuracy_mean'])
  curves['majority answer'] = ([row['labels'] for row in table['majority']],
                               [row['accuracy_mean'] for row in table['majority']])
  return plots.line_chart(curves, 'Mean attribute accuracy (test) against labelled images',
                          log_x=True, width=760)


# ---------------------------------------------------------------- command line
def define_flags() -> None:
  flags.DEFINE_multi_string('run', None, 'LABEL=WORKDIR of a trained run (repeat).',
                            required=True)
  flags.DEFINE_list('labels', ['100', '1000', '10000', 'all'], 'Label budgets: counts or all.')
  console.counts_or_all('labels', ranges.IMAGE_COUNTS[1])
  flags.DEFINE_integer('seeds', 3, 'Seeds per budget (label subset, init, batch order).',
                       lower_bound=1, upper_bound=1000)
  flags.DEFINE_integer('steps', Budget.steps, 'Adam steps of every method.',
                       lower_bound=ranges.STEP_COUNTS[0], upper_bound=ranges.STEP_COUNTS[1])
  flags.DEFINE_integer('batch_size', Budget.batch_size, 'Batch size of every method.',
                       lower_bound=ranges.BATCH_SIZES[0], upper_bound=ranges.BATCH_SIZES[1])
  flags.DEFINE_float('learning_rate', Budget.learning_rate, 'Adam learning rate of every method.')
  console.finite_numbers('learning_rate', *ranges.LEARNING_RATES)
  flags.DEFINE_string('layer', None, "Discriminator layer of the probe (default: the run's "
                      'loss.feature_layer).')
  flags.DEFINE_integer('num_test', 10_000, 'Test images scored.',
                       lower_bound=ranges.IMAGE_COUNTS[0], upper_bound=ranges.IMAGE_COUNTS[1])
  flags.DEFINE_string('data_dir', None, "Where the runs' dataset is prepared (default: theirs).")
  flags.DEFINE_string('out', 'pretraining', 'Folder for pretraining.json and pretraining.png.')


def main(argv: list[str]) -> None:
  del argv
  args = flags.FLAGS
  out = folders.Folder(args.out, 'the output folder', '--out').make()     # before the work
  loaded = {label: runs.load_run(workdir) for label, workdir in runs.parse_runs(args.run).items()}
  first = next(iter(loaded.values()))
  table = measure(loaded, first.split('train_split', args.data_dir),
                  first.split('eval_split', args.data_dir), args.labels, args.seeds,
                  Budget(args.steps, args.batch_size, args.learning_rate), args.layer,
                  args.num_test)
  written = [out.write_atomically('pretraining.json', lambda file: file.write(
                 json.dumps(table, indent=2).encode())),
             out.write_atomically('pretraining.png', lambda file: Image.fromarray(
                 chart(table)).save(file, format='PNG'))]
  print(f'{written[1]} {written[0]} ({table["seconds"]:.0f} s)')


def run() -> None:
  """Console script `vaegan-pretraining`."""
  define_flags()
  console.run_main('vaegan-pretraining', main,
                   (ValueError, FileNotFoundError, folders.FolderError))


if __name__ == '__main__':
  run()
