"""What the command-line tools show: this package's lines, not the libraries', one line
'vaegan-X: message' for a failure the user can fix, one progress line for long loops, and the
commands they suggest in the form that runs from the user's shell. Every CLI runs its main
through `run_main`, which also expands a leading ~ in its path flags (bash leaves
`--data_dir=~/x` alone).

This module imports nothing else of the package, so any module may use it.
"""
from __future__ import annotations

import contextlib
import logging as std_logging
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from absl import app, flags, logging


def quiet_library_logs() -> None:
  """Console logs: this package's INFO lines, and only the warnings of orbax, tfds and jax
  (orbax alone logs dozens of INFO lines per checkpoint, tfds one per shard). orbax's errors with
  a traceback are dropped too: a failed background save reaches us in Checkpointer.wait, which
  says it in one line, where orbax logs the same error with its traceback once per thread it
  passes."""
  own = (f'{os.sep}vaegan_jax{os.sep}', os.path.abspath(sys.argv[0]))   # and the script run
  orbax = f'{os.sep}orbax{os.sep}'
  logging.get_absl_handler().addFilter(
      lambda record: any(part in os.path.abspath(record.pathname) for part in own) or (
          record.levelno >= std_logging.WARNING
          and not (orbax in record.pathname and record.exc_info)))


def run_main(program: str, main: Callable[[list[str]], None],
             failures: Sequence[type[BaseException]] = (),
             flags_parser: Callable[[list[str]], list[str]] | None = None) -> None:
  """absl's app.run(main) for console script `program`: library logs quieted, and each error of a
  type in `failures` ends it with the one line `failure_line` gives, without a traceback."""
  def quiet_main(argv: list[str]) -> None:
    quiet_library_logs()
    try:
      main(argv)
    except tuple(failures) as error:
      raise SystemExit(failure_line(program, error)) from None
    except RuntimeError as error:
      if not str(error).startswith('Unable to initialize backend'):
        raise
      raise SystemExit(failure_line(program, missing_backend(error))) from None

  app.run(quiet_main, argv=expand_home(sys.argv),
          **({'flags_parser': flags_parser} if flags_parser else {}))


def expand_home(argv: list[str]) -> list[str]:
  """`--flag=~/x` (and `--run=LABEL=~/x`) with the ~ expanded, as the shell does for a path
  given alone but not after `=`."""
  def expanded(argument: str) -> str:
    name, equals, value = argument.partition('=')
    if not (argument.startswith('-') and equals):
      return argument
    label, labelled, path = value.partition('=')
    if value.startswith('~'):
      return f'{name}={os.path.expanduser(value)}'
    if labelled and path.startswith('~'):
      return f'{name}={label}={os.path.expanduser(path)}'
    return argument
  return [expanded(argument) for argument in argv]


def command(program: str) -> str:
  """How to run console script `program` from the user's shell, in the form this process was
  run: bare where that finds it, else its path beside this interpreter (.venv/bin/vaegan-prepare,
  where the README's venv is not activated)."""
  beside = os.path.join(os.path.dirname(sys.executable), program)
  found = shutil.which(program)
  if found and (not os.path.exists(beside) or os.path.samefile(found, beside)):
    return program
  if not os.path.exists(beside):
    return program
  relative = os.path.relpath(beside)
  return relative if not relative.startswith('..') else beside


def finite_numbers(flag: str, low: float, high: float) -> None:
  """Refuse, at parsing, a float flag (or a list flag's items) outside [low, high], nan
  included (absl's own bounds let nan through)."""
  def ok(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    try:
      return all(math.isfinite(float(item)) and low <= float(item) <= high for item in values)
    except (TypeError, ValueError):
      return False
  flags.register_validator(flag, ok, f'must be finite numbers from {low:g} to {high:g}')


def counts_or_all(flag: str, high: int) -> None:
  """Refuse, at parsing, a list flag whose items are not 'all' or counts from 1 to `high`."""
  flags.register_validator(
      flag, lambda values: all(value == 'all' or (value.isdigit() and 1 <= int(value) <= high)
                               for value in values),
      f'must be counts from 1 to {high:,}, or all')


def missing_backend(error: RuntimeError) -> str:
  """What to do when jax cannot start the backend JAX_PLATFORMS names."""
  asked = os.environ.get('JAX_PLATFORMS', '')
  cause = str(error).split(':', 1)[0].removeprefix('Unable to initialize ')
  return (f'JAX_PLATFORMS={asked} asks for a device this machine lacks (jax cannot start '
          f'{cause}). Unset JAX_PLATFORMS to use what is here, or set it to one it has, '
          f'e.g. JAX_PLATFORMS=cpu.')


def failure_line(program: str, error: BaseException | str) -> str:
  return f'{program}: {error}'


def one_line(error: BaseException) -> str:
  """'Type: first line of the message' (a library's messages run to many lines)."""
  first = str(error).strip().splitlines()[0] if str(error).strip() else ''
  return f'{type(error).__name__}: {first[:300]}'


@contextlib.contextmanager
def closing_after(*closers: tuple[str, Callable[[], None]]) -> Iterator[None]:
  """Run the body, then every (what, close) in order, whatever happened. The first failure is
  the one raised: a close that fails after an earlier failure (a full disk fails a checkpoint
  first, then every writer's flush) is logged in one line and never raised over it; where the
  body succeeded, the first close to fail is raised once all have run."""
  failure: BaseException | None = None
  try:
    yield
  except BaseException as error:
    failure = error
    raise
  finally:
    first_close_failure = None
    for what, close in closers:
      try:
        close()
      except Exception as error:      # whatever a library raises while closing
        if failure is None and first_close_failure is None:
          first_close_failure = error
        else:
          logging.warning('Closing %s failed too, after the first failure: %s', what,
                          one_line(error))
    if first_close_failure is not None:
      raise first_close_failure


class Progress:
  """'WHAT: done/total (rate/s, ETA)': one line rewritten in place on a terminal, else a log line
  every `every_s` seconds; `finish` ends it."""

  def __init__(self, what: str, total: int, unit: str = 'images', every_s: float = 10.0):
    self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
    self.done, self._start = 0, time.perf_counter()
    self._shown = self._start
    self._terminal = sys.stderr.isatty()

  def line(self) -> str:
    seconds = max(time.perf_counter() - self._start, 1e-9)
    rate = self.done / seconds
    eta = (self.total - self.done) / rate if rate > 0 else float('inf')
    return (f'{self.what}: {self.done:,}/{self.total:,} {self.unit} ({rate:,.0f} {self.unit}/s, '
            f'ETA {eta:.0f} s)')

  def advance(self, count: int = 1) -> None:
    self.done += count
    now = time.perf_counter()
    if now - self._shown >= (0.5 if self._terminal else self.every_s):
      self._shown = now
      if self._terminal:
        sys.stderr.write('\r' + self.line())
        sys.stderr.flush()
      else:
        logging.info('%s', self.line())

  def finish(self) -> None:
    if self._terminal and self._shown > self._start:
      sys.stderr.write('\r' + self.line() + '\n')
      sys.stderr.flush()
