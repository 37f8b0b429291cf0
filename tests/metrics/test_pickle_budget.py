"""pickle_budget.py and pth.py: a .pth of plain containers cannot hang the reader, exhaust its
memory or make its messages endless (issue 45, item 1). Every bomb is read in one process under a
512 MB address-space cap, killed if it takes more than a minute; each must be refused in
seconds, and the project's own state dicts still read."""
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import pytest

from vaegan_jax.metrics import pickle_budget

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, 'tests', 'fixtures')
PROTO = b'\x80\x02'
get = lambda index: b'j' + struct.pack('<I', index)           # LONG_BINGET
put = lambda index: b'r' + struct.pack('<I', index)           # LONG_BINPUT


def doubling(levels, build=b't', leaf=b')'):
  """Memo entry `levels` holds entry levels-1 twice, ..., down to `leaf`: a value of 2^levels
  nodes once expanded, in 12 bytes a level (the issue's 1,301-byte file)."""
  code = leaf + put(0) + b'0'
  for level in range(1, levels + 1):
    code += b'(' + get(level - 1) * 2 + build + put(level) + b'0'
  return code + get(levels)


BOMBS = {
    # the file: a dict whose key is 64 nested tuples (hashing it never ends)
    'tuple key': PROTO + b'}' + doubling(64) + b'K\x00s.',
    'list value': PROTO + b'}K\x00' + doubling(64, build=b'l', leaf=b']') + b's.',
    'dict values': PROTO + b'}K\x00' + doubling(40, build=b'd', leaf=b'}') + b's.',
    # a persistent id printed in the reader's message
    'persistent id': PROTO + b'}K\x00' + doubling(64, build=b'l', leaf=b']') + b'Qs.',
    'memo index 2^32 - 1': PROTO + b'}' + put(0xFFFFFFFF) + b'.',
    'nesting 100,000 deep': PROTO + b']' * 100_000 + b'a' * 99_999 + b'.',
    'three million opcodes': PROTO + b'N0' * 3_000_000 + b'}.',
    'a container grown after it was shared': (
        PROTO + b']' + put(0) + b']' + get(0) + b'a0' + get(0) + b'Na.'),
    'a global by STACK_GLOBAL': PROTO + b'\x8c\x02os\x8c\x06system\x93.',
}


def zip_pth(data_pkl):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as archive:
    archive.writestr('archive/data.pkl', data_pkl)
  return buffer.getvalue()


def many_members(count):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as archive:
    archive.writestr('archive/data.pkl', PROTO + b'}.')
    for index in range(count):
      archive.writestr(f'archive/data/{index}', b'')
  return buffer.getvalue()


def legacy_pth(system_info):
  """The legacy layout's magic number and protocol version, then `system_info`'s pickle."""
  return (pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2)
          + system_info)


READ_ALL = '''
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
from vaegan_jax.metrics import pth
for path in sys.argv[1:]:
  started = time.monotonic()
  try:
    state = pth.read_state_dict(path)
    ended = 'read %d tensors' % len(state)
  except pth.PthError as error:
    ended = 'PthError: ' + str(error)
  print(json.dumps({'file': path, 'ended': ended, 'seconds': time.monotonic() - started}),
        flush=True)
'''


def test_pickle_bombs_are_refused_at_once_under_a_memory_cap(tmp_path):
  files = {}
  for name, pickled in BOMBS.items():
    files[f'zip: {name}'] = zip_pth(pickled)
  files['legacy: tuple key in the system info'] = legacy_pth(BOMBS['tuple key'])
  files['zip: 70,000 members'] = many_members(70_000)
  end = files['zip: 70,000 members'].rfind(b'PK\x05\x06')      # its end record says 1 member
  files['zip: 70,000 members, counted as 1'] = (
      files['zip: 70,000 members'][:end + 8] + struct.pack('<HH', 1, 1)
      + files['zip: 70,000 members'][end + 12:])
  paths = {}
  for index, (name, content) in enumerate(files.items()):
    paths[name] = str(tmp_path / f'bomb_{index}.pth')
    with open(paths[name], 'wb') as file:
      file.write(content)
  fixtures = [os.path.join(FIXTURES, name) for name in ('tiny_state_dict_zip.pth',
                                                         'tiny_state_dict_legacy.pth')]
  result = subprocess.run([sys.executable, '-c', READ_ALL, *paths.values(), *fixtures],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS='1'))
  assert result.returncode == 0, result.stderr[-3000:]
  ended = {line['file']: line for line in map(json.loads, result.stdout.splitlines())}
  assert len(ended) == len(paths) + len(fixtures)
  for name, path in paths.items():
    line = ended[path]
    assert line['ended'].startswith('PthError: ') and line['seconds'] < 10, (name, line)
    assert len(line['ended']) < 600, (name, line)       # no message prints the bomb
  for path in fixtures:
    assert ended[path]['ended'] == 'read 4 tensors', ended[path]
  for name in ('zip: 70,000 members', 'zip: 70,000 members, counted as 1'):
    assert 'a state dict could need; it was not opened' in ended[paths[name]]['ended']
  assert 'asks to unpickle os.system' in ended[paths['zip: a global by STACK_GLOBAL']]['ended']


@pytest.mark.parametrize('name', ['tuple key', 'memo index 2^32 - 1', 'nesting 100,000 deep',
                                  'three million opcodes',
                                  'a container grown after it was shared'])
def test_the_budget_names_what_a_bomb_asks_for(name):
  expected = {'tuple key': 'past the 1,000,000 nodes, 32 levels and 10,000,000 nodes',
              'memo index 2^32 - 1': 'memo index 4294967295, past the opcodes read',
              'nesting 100,000 deep': 'and 33 levels',
              'three million opcodes': 'more than 2,000,000 opcodes',
              'a container grown after it was shared': 'changes a container after putting it'}
  with pytest.raises(pickle_budget.PickleTooCostly, match=expected[name]):
    pickle_budget.check(io.BytesIO(BOMBS[name]), frozenset())


def test_a_state_dict_is_within_the_budget_and_the_stream_is_left_where_it_was():
  with zipfile.ZipFile(os.path.join(FIXTURES, 'tiny_state_dict_zip.pth')) as archive:
    data_pkl = archive.read(next(name for name in archive.namelist()
                                 if name.endswith('data.pkl')))
  stream = io.BytesIO(b'prefix' + data_pkl)
  stream.seek(6)
  pickle_budget.check(stream, frozenset({
      ('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor_v2'),
      ('torch', 'FloatStorage'), ('torch', 'LongStorage'), ('torch', 'HalfStorage'),
      ('torch', 'DoubleStorage')}))
  assert stream.tell() == 6
