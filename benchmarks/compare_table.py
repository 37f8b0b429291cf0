r"""One table from the JSON lines of benchmarks/train_step.py and benchmarks/torch_reference.py.

  bash benchmarks/compare_with_torch.sh        # ends with this table
  python benchmarks/compare_table.py results.jsonl

Rows pair up by the work they do: JAX's `celeba64.py` step with PyTorch's `authors_feb`, and
`celeba64.py:mar` with `authors_mar` (PyTorch's `sequential` and `minimal` styles do other work,
so they have no pair). `x eager` is a row's images/s over that of PyTorch's eager float32 step
(TF32 on a GPU) on the same work: above 1 is faster than PyTorch. FLOPs are each side's own
count of one step: XLA's of the lowered HLO, PyTorch's FlopCounterMode.
"""
from __future__ import annotations

import json
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
  baselines = {}
  for result in results:
    _, work, _ = describe(result)
    if work and is_eager_baseline(result):
      baselines[work] = result['images_per_s']
  rows = ['| step | images/s | ms/step | GFLOP/step | TFLOP/s | x eager | peak GiB | '
          'compile or warm-up s |', '|---|---|---|---|---|---|---|---|']
  for result in results:
    label, work, _ = describe(result)
    flops = result.get('flops_per_step')
    seconds = result['ms_per_step'] / 1e3
    peak = result.get('peak_memory_bytes')
    ratio = result['images_per_s'] / baselines[work] if work in baselines else None
    rows.append(' | '.join([
        f'| {label}', f'{result["images_per_s"]:,.1f}', f'{result["ms_per_step"]:.2f}',
        f'{flops / 1e9:,.1f}' if flops else '-',
        f'{flops / seconds / 1e12:.2f}' if flops else '-',
        f'{ratio:.2f}' if ratio is not None else '-',
        f'{peak / 2**30:.2f}' if peak else '-',
        f'{result.get("compile_s", result.get("warmup_s", 0)):.1f} |']))
  return '\n'.join(rows)


def main(argv: list[str]) -> None:
  with open(argv[1]) if len(argv) > 1 else sys.stdin as file:
    print(table(read_lines(file)))


if __name__ == '__main__':
  main(sys.argv)
