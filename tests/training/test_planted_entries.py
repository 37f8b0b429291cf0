"""SECURITY.md's write promise, swept: every entry the trainer and prepare write, planted in turn
as a symbolic link, a dangling link, a hard link and a FIFO (tests/planted_entries.py). Nothing
outside the folder written may change, and each case ends in one line or in a run that replaced
the planted entry instead of writing through it."""
import json
import os
import subprocess
import sys

import planted_entries
from tiny_runs import REPO, subprocess_env

TESTS = os.path.join(REPO, 'tests')


def test_every_entry_planted_as_a_link_or_fifo_changes_nothing_outside(tmp_path, data_dir):
  result = subprocess.run(
      [sys.executable, os.path.join(TESTS, 'planted_entries.py'), data_dir, str(tmp_path)],
      env={**subprocess_env(8), 'PYTHONPATH': os.pathsep.join([REPO, TESTS])}, capture_output=True,
      text=True, timeout=600)          # a write that blocked on a FIFO would hang here
  assert result.returncode == 0, result.stderr[-3000:]
  cases = [json.loads(line) for line in result.stdout.splitlines()]
  assert len(cases) == len(planted_entries.CASES)
  folders_on_the_way = {entry for entry, expects, _ in planted_entries.WORKDIR_ENTRIES
                        if expects == 'folder'} | {
      entry for entry, expects in planted_entries.DATA_DIR_ENTRIES if expects == 'folder'}
  written_in_place = ('.lock', 'tensorboard/EVENTS', 'raw/synthetic_300/.draw.lock',
                      'vaegan_images/synthetic_16/.prepare.lock')
  for case in cases:
    assert case['outside_changed'] == [], case
    assert case['one_line'], case
    (entry, kind), *others = case['plants']
    # A folder on the way, or a file written in place, is never followed: the write is refused,
    # naming it (vaegan-figures' prior fits are only not kept, with a warning).
    if entry in folders_on_the_way - {'priors'} or entry in written_in_place:
      named = entry.replace('EVENTS', 'events.out.tfevents.')
      assert case['ended'].startswith('UnsafeFile: ') and f'/{named}' in case['ended'], case
    if others:                   # files written whole: the planted entries were replaced
      assert case['ended'] == 'ok', case
