"""Every numeric flag of every command line has a range a real run could use (issue 45, item 4;
the config's keys: test_schema.py): 1e20, 10^20, inf and nan are refused while the flags are
parsed, in absl's one line that names the flag, and so is -1 wherever a count is meant."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each command line's module, and the flags it requires.
COMMANDS = {
    'vaegan-prepare': ('vaegan_jax.data.prepare', ['--data_dir=data']),
    'vaegan-synthetic': ('vaegan_jax.data.synthetic_celeba', ['--out=raw']),
    'vaegan-train': ('vaegan_jax.training.main', ['--workdir=run']),
    'vaegan-figures': ('vaegan_jax.analysis.figures', ['--figure=samples', '--run=A=run']),
    'vaegan-pretraining': ('vaegan_jax.analysis.pretraining', ['--run=A=run']),
    'vaegan-attribute-predictor': ('vaegan_jax.metrics.attribute_predictor', ['--out=out']),
    'vaegan-explore': ('vaegan_jax.analysis.explore_page', ['--run=run']),
}
NEGATIVE_ALLOWED = {'strengths'}          # an attribute vector is also subtracted
PARSE_EVERY_NUMBER = '''
import importlib, json, sys
from absl import flags
module = importlib.import_module(sys.argv[1])
getattr(module, 'define_flags', lambda: None)()
numeric = [flag.name for flag in flags.FLAGS.get_flags_for_module(module)
           if isinstance(flag.parser, (flags.IntegerParser, flags.FloatParser))
           or flag.name in ('strengths', 'labels')]
results = {}
for name in numeric:
  for value in ('0', '-1', '1e20', '99999999999999999999', 'inf', 'nan'):
    try:
      flags.FLAGS(['program', *sys.argv[2:], f'--{name}={value}'])
      results[f'{name}={value}'] = 'accepted'
    except flags.Error as error:
      results[f'{name}={value}'] = str(error)
    flags.FLAGS.unparse_flags()
print(json.dumps(results))
'''


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_numbers_past_any_real_run_are_refused_while_parsing(command):
  module, required = COMMANDS[command]
  result = subprocess.run([sys.executable, '-c', PARSE_EVERY_NUMBER, module, *required],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(result.stdout.splitlines()[-1])
  assert results, 'no numeric flags found'
  for case, ended in results.items():
    name, value = case.split('=', 1)
    if value == '0' or (value == '-1' and name in NEGATIVE_ALLOWED):
      continue
    assert ended != 'accepted' and f'--{name}' in ended and '\n' not in ended, (case, ended)
