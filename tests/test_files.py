"""files.py: reading only bounded regular files (a link to /dev/zero, a FIFO, a file over the cap
are refused at once)."""
import os
import time

import pytest

from vaegan_jax import files


def test_only_regular_files_under_the_cap_are_read(tmp_path):
  small = tmp_path / 'small.bin'
  small.write_bytes(b'x' * 100)
  assert files.read_regular_file(str(small), 100) == b'x' * 100
  with pytest.raises(files.UnsafeFile, match='100 bytes, over the limit of 99 .raise it with '
                                             '--cap'):
    files.read_regular_file(str(small), 99, '--cap')
  zero = tmp_path / 'zero.png'
  zero.symlink_to('/dev/zero')                 # grew to 7.7 GB before
  fifo = tmp_path / 'fifo.png'
  os.mkfifo(fifo)                              # hung forever before
  for path in (zero, fifo):
    started = time.monotonic()
    with pytest.raises(files.UnsafeFile, match='not a regular file'):
      files.read_regular_file(str(path), 1 << 20)
    with pytest.raises(files.UnsafeFile, match='not a regular file'):
      files.read_head(str(path), 16)
    assert time.monotonic() - started < 5
