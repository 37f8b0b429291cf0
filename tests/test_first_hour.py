"""The first hour at the console (issue 47): every command works as typed, with a fresh HOME:
`~` expanded in every path flag of every command line, the tfds route without --download fails
in one line and creates nothing, runs/ is ignored by git, and the hints name commands that run."""
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from vaegan_jax import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def test_a_leading_tilde_is_expanded_after_the_equals_sign():
  home = os.path.expanduser('~')
  assert console.expand_home(['prog', '--data_dir=~/data', '--run=A=~/runs/a', '--run=B=runs/b',
                              '--name=x~y', 'positional~', '--out=~']) == [
      'prog', f'--data_dir={home}/data', f'--run=A={home}/runs/a', '--run=B=runs/b',
      '--name=x~y', 'positional~', f'--out={home}']


def test_every_command_line_reads_tilde_paths_from_a_fresh_home(tmp_path):
  """Each command with its path flags given as ~/..., run with HOME a fresh folder: what it
  makes or names is in that HOME, and nothing named ~ appears in the working folder."""
  home, work = tmp_path / 'home', tmp_path / 'work'
  (home / 'faces').mkdir(parents=True)
  work.mkdir()
  for index in range(6):
    Image.fromarray(np.full((24, 20, 3), 40 * index, np.uint8)).save(
        home / 'faces' / f'face_{index}.png')
  environment = dict(os.environ, HOME=str(home), PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  commands = {
      'vaegan-prepare': ['--image_folder=~/faces', '--data_dir=~/data', '--resolution=8'],
      'vaegan-synthetic': ['--out=~/raw', '--num_images=2', '--workers=1'],
      'vaegan-train': [f'--config={REPO}/vaegan_jax/configs/tiny.py', '--workdir=~/run',
                       '--config.data.data_dir=~/nothing', '--config.data.synthetic_images=0'],
      'vaegan-figures': ['--figure=samples', '--run=A=~/missing_run', '--out=~/figures'],
      'vaegan-pretraining': ['--run=A=~/missing_run', '--out=~/pretraining'],
      'vaegan-attribute-predictor': ['--data_dir=~/nothing', '--out=~/predictor'],
  }
  running = {name: subprocess.Popen([os.path.join(BIN, name), *args], cwd=work, env=environment,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}
  ended = {name: process.communicate(timeout=300) + (process.returncode,)
           for name, process in running.items()}
  assert ended['vaegan-prepare'][2] == 0, ended['vaegan-prepare'][1][-2000:]
  assert (home / 'data' / 'vaegan_images' / 'faces_8' / '1.0.0' / 'dataset_info.json').exists()
  assert ended['vaegan-synthetic'][2] == 0, ended['vaegan-synthetic'][1][-2000:]
  assert (home / 'raw' / 'list_attr_celeba.txt').exists()
  last = {name: stderr.strip().splitlines()[-1] for name, (_, stderr, code) in ended.items()
          if code}
  assert f'No prepared dataset synthetic_16 in {home}/nothing' in last['vaegan-train']
  assert (home / 'run').is_dir()                                 # the workdir was made there
  for name in ('vaegan-figures', 'vaegan-pretraining'):
    assert f'No checkpoint in {home}/missing_run/checkpoints' in last[name], last[name]
  assert f'No prepared dataset synthetic_32 in {home}/nothing' in last[
      'vaegan-attribute-predictor']
  assert os.listdir(work) == []                                  # no folder named ~


def test_the_tfds_route_without_download_fails_at_once_and_creates_nothing(tmp_path):
  before = set(glob.glob(os.path.join(tempfile.gettempdir(), 'tmp*tfds*')))
  started = time.monotonic()
  done = subprocess.run([os.path.join(BIN, 'vaegan-prepare'), '--tfds_name=celeb_a',
                         f'--data_dir={tmp_path}/data'], cwd=tmp_path, capture_output=True,
                        text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert time.monotonic() - started < 30                        # 206 s of Drive retries before
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert done.stderr.strip().splitlines()[-1] == (
      f"vaegan-prepare: The tfds dataset 'celeb_a' is not prepared in {tmp_path}/data (no "
      f"{tmp_path}/data/celeb_a/.../dataset_info.json), and without --download nothing is "
      f"fetched. Pass --download to let tfds fetch and prepare it (it needs TensorFlow), or "
      f"point --tfds_data_dir at where it is prepared, or prepare CelebA from its raw files "
      f"with --raw_dir.")
  assert os.listdir(tmp_path) == []
  assert set(glob.glob(os.path.join(tempfile.gettempdir(), 'tmp*tfds*'))) <= before


def test_runs_is_ignored_by_git():
  done = subprocess.run(['git', '-C', REPO, 'check-ignore', '-q', 'runs/synthetic/metrics.jsonl'],
                        capture_output=True)
  assert done.returncode == 0, 'runs/ is not in .gitignore'


def test_hints_name_the_command_as_this_shell_runs_it(monkeypatch, tmp_path):
  """Bare where the venv's bin is on PATH; its path where it is not (the README's commands do not
  activate the venv)."""
  monkeypatch.chdir(REPO)
  monkeypatch.setenv('PATH', '/usr/bin:/bin')
  assert console.command('vaegan-prepare') == os.path.relpath(os.path.join(BIN, 'vaegan-prepare'))
  monkeypatch.setenv('PATH', BIN + os.pathsep + '/usr/bin:/bin')
  assert console.command('vaegan-prepare') == 'vaegan-prepare'
