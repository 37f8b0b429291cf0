r"""One table from the JSON lines of benchmarks/train_step.py and benchmarks/torch_reference.py.

  bash benchmarks/compare_with_torch.sh        # ends with this table
  python benchmarks/compare_table.py results.jsonl

Rows pair up by the work they do: JAX's `celeba64.py` step with PyTorch's `authors_feb`, and
`celeba64.py:mar` with `authors_mar` (PyTorch's `sequential` and `minimal` styles do other work,
so they have no pair). `x eager` is a row's images/s over that of PyTorch's eager float32 step
(TF32 on a GPU) on the same work: above 1 is faster than PyTorch. FLOPs are each side's own
count of one step: XLA's of the lowered HLO, PyTorch's FlopCounterMode. A configuration timed in
several rounds (compare_with_torch.sh's ROUNDS) is one row of medians; its `x eager` is the median
of its rounds' ratios, each round's JAX step over the same round's PyTorch step, then the rounds'
own ratios in brackets.
"""
from __future__ import annotations

import json
import statistics
import sys
from typing import Iterable

WORK = {'': 'feb', 'mar': 'mar', 'authors_feb': 'feb', 'authors_mar': 'mar'}


def read_lines(lines: Iterable[str]) -> list[dict]:
  return [json.loads(line) for line in lines if line.startswith('{')]


def describe(result: dict) -> tuple[str, str | None, str]:
  """(label, the work it does or None, its precision) of one JSON line."""
  if 'peer' in result:
    style = result['peer'].removeprefix('torch-')
    precision = 'bf16' if result['bf16'] else ('tf32' if result.get('tf32') else 'f32')
    mode = 'eager' if result.get('compile', 'none') == 'none' else f'compile {result["compile"]}'
    return f'PyTorch {style}, {mode}, {precision}', WORK.get(style), precision
  precision = 'bf16' if result['dtype'] == 'bfloat16' else 'f32'
  variant = f'celeba64.py{":" + result["config_arg"] if result["config_arg"] else ""}'
  dispatch = result.get('steps_per_dispatch', 1)
  label = (f'vaegan_jax {variant}, {result["passes"]} passes, {precision}'
           + (f', K={dispatch}' if dispatch != 1 else ''))
  work = WORK.get(result['config_arg']) if result['passes'] == 'separate' else None
  return label, work, precision


def is_eager_baseline(result: dict) -> bool:
  return ('peer' in result and not result['bf16'] and result.get('compile', 'none') == 'none')


def table(results: list[dict]) -> str:
  rounds = {}                     # label -> its lines, one per round, in the order they ran
  works = {}                      # label -> the work it does, or None
  for result in results:
    label, works[label], _ = describe(result)
    rounds.setdefault(label, []).append(result)
  baselines = {work: [line['images_per_s'] for line in rounds[label]]   # one per round
               for label, work in works.items() if work and is_eager_baseline(rounds[label][0])}
  rows = ['| step | images/s | ms/step | GFLOP/step | TFLOP/s | x eager | peak GiB | '
          'compile or warm-up s |', '|---|---|---|---|---|---|---|---|']
  for label, lines in rounds.items():
    first, work = lines[0], works[label]
    images_per_s = statistics.median(line['images_per_s'] for line in lines)
    ms_per_step = statistics.median(line['ms_per_step'] for line in lines)
    flops = first.get('flops_per_step')
    peak = first.get('peak_memory_bytes')
    ratios = [line['images_per_s'] / baseline
              for line, baseline in zip(lines, baselines.get(work, []))]
    ratio = f'{statistics.median(ratios):.2f}' if ratios else '-'
    if len(ratios) > 1:
      ratio += ' (' + ', '.join(f'{r:.2f}' for r in ratios) + ')'
    rows.append(' | '.join([
        f'| {label}', f'{images_per_s:,.1f}', f'{ms_per_step:.2f}',
        f'{flops / 1e9:,.1f}' if flops else '-',
        f'{flops / (ms_per_step / 1e3) / 1e12:.2f}' if flops else '-', ratio,
        f'{peak / 2**30:.2f}' if peak else '-',
        f'{first.get("compile_s", first.get("warmup_s", 0)):.1f} |']))
  return '\n'.join(rows)


def main(argv: list[str]) -> None:
  with open(argv[1]) if len(argv) > 1 else sys.stdin as file:
    print(table(read_lines(file)))


if __name__ == '__main__':
  main(sys.argv)
