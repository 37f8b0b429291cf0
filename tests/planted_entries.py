"""The sweep of SECURITY.md's write promise, run as a script (a case that hung would hang only
this process, which its test kills): every entry the trainer and prepare write, planted in turn
as a symbolic link, a dangling link, a hard link and a FIFO, each case in a fresh workdir or
data_dir, all in one process, so that the runs share the compiled steps. Files written whole
(grids, the drawn faces' files) take one kind each in the same run.

    python tests/planted_entries.py DATA_DIR SCRATCH      # prints one JSON line per case

DATA_DIR holds the tiny config's prepared dataset (made here if absent). Each line says how the
case ended ('ok', or the error's type and message) and what changed outside the folder written.
"""
import hashlib
import json
import os
import shutil
import socket
import sys
import time

from checkpoint_damage import damage_by_truncation
from tiny_runs import tiny_run_config
from vaegan_jax.analysis import runs
from vaegan_jax.data import celeba, prepare
from vaegan_jax.metrics import extractors
from vaegan_jax.training import main, train

KINDS = {'file': ('symlink', 'dangling', 'hardlink', 'fifo'),
         'folder': ('symlink', 'dangling', 'fifo')}
# Where each entry is planted: 'fresh' a new workdir; 'finished' a copy of a run with checkpoints
# 3 and 6; 'damaged' the same with step 6 cut in half, so that the trainer moves it aside.
WORKDIR_ENTRIES = [                     # (entry, what the writer expects there, where)
    ('.lock', 'file', 'fresh'),
    ('metrics.jsonl', 'file', 'fresh'),
    ('metrics.jsonl', 'file', 'finished'),          # truncated on resume, then appended to
    ('images', 'folder', 'fresh'),
    ('tensorboard', 'folder', 'fresh'),
    ('tensorboard/EVENTS', 'file', 'fresh'),        # the events file's predictable names
    ('checkpoints', 'folder', 'fresh'),
    ('checkpoints/3', 'folder', 'finished'),
    ('checkpoints-unusable', 'folder', 'damaged'),
    ('priors', 'folder', 'finished'),               # written by vaegan-figures --prior=gaussian
]
DATA_DIR_ENTRIES = [
    ('raw', 'folder'),
    ('raw/synthetic_300', 'folder'),
    ('raw/synthetic_300/.draw.lock', 'file'),
    ('vaegan_images', 'folder'),
    ('vaegan_images/synthetic_16', 'folder'),
    ('vaegan_images/synthetic_16/.prepare.lock', 'file'),
    ('vaegan_extractors', 'folder'),               # the sample-quality metrics' cache
]
# Files written whole and renamed into place: a planted entry is replaced, and the run goes on.
# Each kind is planted at another of them in one run, to keep the sweep short.
GRIDS = [f'images/{name}_00000003.png' for name in ('samples', 'reconstructions', 'test_images')]
RAW_FILES = [f'raw/synthetic_300/{name}' for name in celeba.FILE_NAMES[1:]]
CASES = (  # (where, start, ((entry, kind), ...), what the writer expects there)
    [('workdir', start, ((entry, kind),), expects) for entry, expects, start in WORKDIR_ENTRIES
     for kind in KINDS[expects]]
    + [('data_dir', 'fresh', ((entry, kind),), expects) for entry, expects in DATA_DIR_ENTRIES
       for kind in KINDS[expects]]
    + [('workdir', 'fresh', tuple(zip(GRIDS, ('symlink', 'dangling', 'hardlink'))), 'file'),
       ('workdir', 'fresh', ((GRIDS[0], 'fifo'),), 'file'),
       ('data_dir', 'fresh', tuple(zip(RAW_FILES, KINDS['file'])), 'file')])


def snapshot(folder):
  """{path: what it is} for everything under `folder`, no link followed."""
  found = {}
  for root, folders, names in os.walk(folder):
    for name in folders + names:
      path = os.path.join(root, name)
      if os.path.islink(path):
        found[path] = 'link to ' + os.readlink(path)
      elif os.path.isfile(path):
        with open(path, 'rb') as file:
          found[path] = hashlib.sha256(file.read()).hexdigest()
      else:
        found[path] = 'folder' if os.path.isdir(path) else 'other'
  return found


def plant(root, entry, expects, kind, outside):
  """Plant `kind` at ROOT/ENTRY (ENTRY's EVENTS: at the events file's names of the next
  minute), pointing into `outside`."""
  names = [entry]
  if entry.endswith('EVENTS'):
    now, host = int(time.time()), socket.gethostname()
    names = [entry.replace('EVENTS', f'events.out.tfevents.{now + delay}.{host}')
             for delay in range(60)]
  for name in names:
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)                  # what a finished run holds there: replaced
    elif os.path.lexists(path):
      os.remove(path)
    if kind == 'symlink':
      os.symlink(os.path.join(outside, 'victim_folder' if expects == 'folder' else 'victim_file'),
                 path)
    elif kind == 'dangling':
      os.symlink(os.path.join(outside, 'created_through_a_link'), path)
    elif kind == 'hardlink':
      os.link(os.path.join(outside, 'victim_file'), path)
    else:
      os.mkfifo(path)


def outcome(action):
  """'ok', or 'TYPE: message' of the error `action` raised, with whether the trainer's command
  line says it in one line (a failure of main.FAILURES, or a write failure, and no newline)."""
  try:
    action()
    return {'ended': 'ok', 'one_line': True}
  except Exception as error:       # every failure is reported; the test judges it
    expected = isinstance(error, main.FAILURES + (train.checkpoints.CheckpointWriteError,
                                                  train.folders.WriteFailed))
    return {'ended': f'{type(error).__name__}: {error}',
            'one_line': expected and '\n' not in str(error)}


def main_(data_dir, scratch):
  finished = os.path.join(scratch, 'finished')
  train.train_and_evaluate(tiny_run_config(data_dir, num_train_steps=6), finished)
  damaged = os.path.join(scratch, 'damaged')
  shutil.copytree(finished, damaged, symlinks=True)
  damage_by_truncation(os.path.join(damaged, 'checkpoints', '6'))

  for index, (where, start, plants, expects) in enumerate(CASES):
    case = os.path.join(scratch, f'case_{index}')
    outside = os.path.join(case, 'outside')
    os.makedirs(os.path.join(outside, 'victim_folder'))
    with open(os.path.join(outside, 'victim_file'), 'w') as file:
      file.write('precious')
    with open(os.path.join(outside, 'victim_folder', 'kept'), 'w') as file:
      file.write('precious too')
    written = os.path.join(case, 'written')
    entry = plants[0][0]
    if where == 'workdir' and start != 'fresh':
      shutil.copytree({'finished': finished, 'damaged': damaged}[start], written, symlinks=True)
    elif where == 'data_dir' and not entry.startswith('raw'):    # the faces drawn already
      shutil.copytree(os.path.join(data_dir, 'raw'), os.path.join(written, 'raw'))
    os.makedirs(written, exist_ok=True)
    for planted, kind in plants:
      plant(written, planted, expects, kind, outside)
    before = snapshot(outside)
    started = time.monotonic()
    if where == 'data_dir' and entry.startswith('vaegan_extractors'):
      ended = outcome(lambda: extractors.cache_dir(written, 'synthetic', 16, 3, 'domain'))
    elif where == 'data_dir':
      ended = outcome(lambda: prepare.ensure_prepared(tiny_run_config(written).data, 16, 3))
    elif entry == 'priors':
      ended = outcome(lambda: runs.load_run(written).prior('gaussian', data_dir))
    else:
      ended = outcome(lambda: train.train_and_evaluate(
          tiny_run_config(data_dir, num_train_steps=3 if start == 'fresh' else 9), written))
    print(json.dumps({'where': where, 'start': start, 'plants': plants, **ended,
                      'seconds': round(time.monotonic() - started, 1),
                      'outside_changed': sorted(set(snapshot(outside).items())
                                                ^ set(before.items()))}), flush=True)


if __name__ == '__main__':
  main_(*sys.argv[1:3])
