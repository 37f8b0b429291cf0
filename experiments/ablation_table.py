r"""Issue 22's ablation tables, from the quality lines its runs left (committed, a few KB each).

  python experiments/ablation_table.py --folder=experiments/ablation_3000

The folder holds one file per run, VARIANT_sSEED.jsonl: the 'quality' lines of that run's
metrics.jsonl (e.g. `grep '"kind": "quality"' RUN/metrics.jsonl > faithful_s0.jsonl`), or the
'quality_raw_decoder' lines of a run that kept the decoder's EMA with quality.raw_decoder=True,
which are the run without the EMA (`grep '"kind": "quality_raw_decoder"' RUN/metrics.jsonl >
faithful_s1.jsonl`). Prints
three markdown tables: each run at its last measured step (sample FID, precision and recall from
N(0, I) and from each fitted prior it measured, the samples' checkerboard index, the
reconstructions' FID); per variant, the medians over seeds of what issue 48 chooses the
preset by, for the samples of one sampler (`--sampler`, default gmm10): FID, KID, recall,
sharpness ratio and checkerboard index; and the seeds table: per variant and prior, the seeds, the median and
the worst final sample FID, and the share of seeds within 1.5x of the best seed's (the issue's
measure of stability). All FIDs are in the domain feature space.
"""
from __future__ import annotations

import collections
import json
import os
import re
import statistics

from absl import app, flags

from vaegan_jax import console

_FOLDER = flags.DEFINE_string('folder', 'experiments/ablation_3000',
                              'Folder of VARIANT_sSEED.jsonl files.')
_SAMPLER = flags.DEFINE_string('sampler', 'gmm10', "The samples of the third table: 'samples' "
                               "for N(0, I)'s, or a fitted prior's label (gaussian, gmm10).")
RUN_FILE = re.compile(r'(?P<variant>.+)_s(?P<seed>[0-9]+)\.jsonl')
WITHIN = 1.5                 # a seed "trains" if its final sample FID is within 1.5x the best's
QUALITY_KINDS = ('quality', 'quality_raw_decoder')     # a run's own, or the run without its EMA


def last_quality_line(path: str) -> dict:
  """The quality line of the highest step in a run's file, of its one kind (QUALITY_KINDS)."""
  with open(path) as file:
    lines = [json.loads(line) for line in file if line.strip()]
  lines = [line for line in lines if line.get('kind') in QUALITY_KINDS]
  kinds = sorted({line['kind'] for line in lines})
  if not kinds:
    raise app.UsageError(f'{path} holds no quality line; copy the run\'s "kind": "quality" '
                         f'lines into it.')
  if len(kinds) > 1:
    raise app.UsageError(f'{path} holds quality lines of the kinds {kinds}; it needs those of '
                         f'one kind, "quality" or "quality_raw_decoder", from one run.')
  return max(lines, key=lambda line: line['step'])


def sample_sets(line: dict) -> list[str]:
  """'samples' (N(0, I)) and each fitted prior's set ('samples_gaussian', ...) in the line."""
  return sorted((key[len('fid_domain_'):] for key in line
                 if key.startswith('fid_domain_samples')), key=lambda name: (name != 'samples',
                                                                             name))


def seeds_summary(fids: list[float]) -> dict:
  """{'seeds', 'median', 'worst', 'share'}: the share of seeds within WITHIN x the best FID."""
  best = min(fids)
  return dict(seeds=len(fids), median=statistics.median(fids), worst=max(fids),
              share=sum(fid <= WITHIN * best for fid in fids) / len(fids))


def prior_name(sample_set: str) -> str:
  return 'N(0, I)' if sample_set == 'samples' else sample_set[len('samples_'):]


SAMPLER_COLUMNS = (('fid_domain_{}', 'FID', '.0f'), ('kid_domain_{}', 'KID', '.3g'),
                   ('recall_domain_{}', 'recall', '.2f'),
                   ('sharpness_{}', 'sharpness ratio', '.2f'),
                   ('checkerboard_{}', 'checkerboard', '.2f'))


def sampler_table(runs: dict, sample_set: str) -> None:
  """Per variant, the medians over its seeds (at each run's last step) of what issue 48 chooses
  the preset by: the samples' FID, KID, recall, sharpness ratio (1.0: as sharp as the real
  images) and checkerboard index, then the reconstructions' FID and sharpness ratio."""
  print(f'Samples from {prior_name(sample_set)}, medians over seeds:')
  print()
  print('| variant | seeds | ' + ' | '.join(title for _, title, _ in SAMPLER_COLUMNS)
        + ' | reconstruction FID | reconstruction sharpness |')
  print('|---|---|' + '---|' * (len(SAMPLER_COLUMNS) + 2))
  by_variant = collections.defaultdict(list)
  for (variant, _), line in sorted(runs.items()):
    by_variant[variant].append(line)
  median = lambda lines, key, form: (
      format(statistics.median(line[key] for line in lines), form)
      if all(key in line for line in lines) else '-')
  for variant, lines in by_variant.items():
    cells = [median(lines, key.format(sample_set), form) for key, _, form in SAMPLER_COLUMNS]
    cells += [median(lines, 'fid_domain_reconstructions', '.0f'),
              median(lines, 'sharpness_reconstructions', '.2f')]
    print(f'| {variant} | {len(lines)} | ' + ' | '.join(cells) + ' |')


def main(argv: list[str]) -> None:
  del argv
  runs = {}
  for name in sorted(os.listdir(_FOLDER.value)):
    match = RUN_FILE.fullmatch(name)
    if match:
      runs[match['variant'], int(match['seed'])] = last_quality_line(
          os.path.join(_FOLDER.value, name))
  if not runs:
    raise app.UsageError(f'No VARIANT_sSEED.jsonl file in {_FOLDER.value}.')

  print('| variant | seed | step | sample FID | precision | recall | checkerboard (samples) '
        '| reconstruction FID |')
  print('|---|---|---|---|---|---|---|---|')
  by_variant = collections.defaultdict(lambda: collections.defaultdict(list))
  for (variant, seed), line in sorted(runs.items()):
    sets = sample_sets(line)
    cells = {metric: ' / '.join(f'{prior_name(s)} {line[f"{metric}_domain_{s}"]:{form}}'
                                for s in sets)
             for metric, form in (('fid', '.0f'), ('precision', '.2f'), ('recall', '.2f'))}
    print(f'| {variant} | {seed} | {line["step"]} | {cells["fid"]} | {cells["precision"]} | '
          f'{cells["recall"]} | {line["checkerboard_samples"]:.2f} | '
          f'{line["fid_domain_reconstructions"]:.0f} |')
    for sample_set in sets:
      by_variant[variant][prior_name(sample_set)].append(line[f'fid_domain_{sample_set}'])
    by_variant[variant]['reconstructions'].append(line['fid_domain_reconstructions'])

  print()
  sampler_table(runs, 'samples' if _SAMPLER.value == 'samples' else f'samples_{_SAMPLER.value}')
  print()
  print(f'| variant | samples from | seeds | median FID | worst FID | seeds within {WITHIN}x of '
        f'the best |')
  print('|---|---|---|---|---|---|')
  for variant, sets in by_variant.items():
    for sample_set, fids in sets.items():
      summary = seeds_summary(fids)
      print(f'| {variant} | {sample_set} | {summary["seeds"]} | {summary["median"]:.0f} | '
            f'{summary["worst"]:.0f} | {summary["share"]:.0%} |')


if __name__ == '__main__':
  console.run_main('ablation_table.py', main)
