r"""Where a step's time goes: the XLA ops (CPU) or kernels (GPU, TPU) of a `jax.profiler` trace.

  python benchmarks/trace_summary.py TRACE_DIR --steps=N [--top=25]

TRACE_DIR is what `jax.profiler.trace(TRACE_DIR)` wrote (benchmarks/train_step.py --profile_dir
writes one per timed step); its newest `*.trace.json.gz` is read. Each op kind (the HLO name
without its `.N` suffix, e.g. every `ynn_fusion.K` as `ynn_fusion`) gets its time and count per
step, N the steps traced. On the CPU the ops are the thunks XLA:CPU ran, which overlap where its
executor runs two at once, so their sum can exceed the wall time. On an accelerator they are
the device's own events: its 'XLA Ops' line where the trace has one, else its streams' kernels.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

# A trace of a few steps is megabytes; more than this is not one of ours.
MAX_TRACE_BYTES = 1 << 30
_HLO_NAME = re.compile(r'^[a-z][a-z0-9_-]*(\.\d+)?$')
_DERIVED_LINES = ('XLA Modules', 'Steps', 'XLA TraceMe', 'Framework Ops', 'Framework Name Scope',
                  'Source code')


def newest_trace(directory: str) -> str:
  paths = glob.glob(os.path.join(directory, 'plugins', 'profile', '*', '*.trace.json.gz'))
  if not paths:
    raise FileNotFoundError(f'No plugins/profile/*/*.trace.json.gz under {directory}: pass the '
                            'directory given to jax.profiler.trace.')
  return max(paths, key=os.path.getmtime)


def load_trace(path: str) -> dict:
  with gzip.open(path, 'rb') as stream:
    data = stream.read(MAX_TRACE_BYTES + 1)
  if len(data) > MAX_TRACE_BYTES:
    raise ValueError(f'{path} holds over {MAX_TRACE_BYTES} bytes of trace: profile fewer steps.')
  return json.loads(data)


def op_kind(name: str) -> str:
  """'ynn_fusion.16' -> 'ynn_fusion'; a kernel's name up to its template or argument list."""
  name = re.sub(r'\.\d+$', '', name)
  return re.split(r'[<(]', name, maxsplit=1)[0].strip()[:80] or name[:80]


def op_events(trace: dict) -> list[dict]:
  """The complete ('X') events of the executed ops: on the device's lines if it has any."""
  events = trace.get('traceEvents', [])
  process_names, thread_names = {}, {}
  for event in events:
    if event.get('ph') == 'M' and event.get('name') == 'process_name':
      process_names[event['pid']] = event['args']['name']
    elif event.get('ph') == 'M' and event.get('name') == 'thread_name':
      thread_names[event['pid'], event['tid']] = event['args']['name']
  complete = [event for event in events if event.get('ph') == 'X']
  devices = {pid for pid, name in process_names.items() if name.startswith('/device:')}
  if not devices:         # the CPU: the thunks, named as HLO instructions, on the host's threads
    return [event for event in complete if _HLO_NAME.match(event['name'])]
  on_device = [event for event in complete if event['pid'] in devices]
  line = lambda event: thread_names.get((event['pid'], event['tid']), '')
  xla_ops = [event for event in on_device if line(event) == 'XLA Ops']
  return xla_ops or [event for event in on_device if line(event) not in _DERIVED_LINES]


def summarise(trace: dict, steps: int) -> dict:
  """{'ops_per_step', 'op_ms_per_step', 'kinds': [(kind, ms per step, count per step), ...]},
  the kinds by time, longest first."""
  time_us, count = collections.Counter(), collections.Counter()
  for event in op_events(trace):
    kind = op_kind(event['name'])
    time_us[kind] += float(event.get('dur', 0.0))
    count[kind] += 1
  kinds = [(kind, time_us[kind] / 1e3 / steps, count[kind] / steps)
           for kind, _ in time_us.most_common()]
  return {'ops_per_step': sum(count.values()) / steps,
          'op_ms_per_step': sum(time_us.values()) / 1e3 / steps, 'kinds': kinds}


def format_summary(summary: dict, top: int) -> str:
  total = summary['op_ms_per_step'] or 1.0
  lines = [f'{summary["ops_per_step"]:.0f} ops per step, {summary["op_ms_per_step"]:.1f} ms '
           'of op time per step', 'op kind | ms/step | share | ops/step']
  for kind, ms, count in summary['kinds'][:top]:
    lines.append(f'{kind} | {ms:.2f} | {100 * ms / total:.1f}% | {count:.1f}')
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('trace_dir')
  parser.add_argument('--steps', type=int, required=True, help='train steps the trace holds')
  parser.add_argument('--top', type=int, default=25)
  args = parser.parse_args()
  summary = summarise(load_trace(newest_trace(args.trace_dir)), args.steps)
  print(format_summary(summary, args.top))
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
