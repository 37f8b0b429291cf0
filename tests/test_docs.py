"""The README and docs/ stay true (issue 46): every relative link and image resolves, every
config key is documented in docs/training.md and no documented key is missing from the schema,
the README is at most 200 lines outside its BibTeX block, and every command in a code block
either runs here as written (with tiny-size flags appended) or is listed with the reason it
cannot: a new command with neither fails."""
import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaegan_jax.configs import schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md', 'SECURITY.md', 'experiments/README.md'] + sorted(
    os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, 'docs', '*.md')))
COMMAND_PAGES = ['README.md'] + [page for page in PAGES if page.startswith('docs/')]

# Flags that make a training run of the embedded default's size take seconds.
TINY_TRAINING = ('--config.data.synthetic_images=300 --config.num_train_steps=2 '
                 '--config.quality.extractor=none --config.grid_size=2 --config.eval_batches=1 '
                 '--config.log_every_steps=1')
# Commands run as written, in a folder laid out as a clone, with a fresh HOME: (what is appended).
SMALL_NETWORKS = ('--config.num_train_steps=1 --config.global_batch_size=8 '
                  '--config.quality.extractor=none --config.grid_size=2 --config.eval_batches=1 '
                  "--config.model.encoder_channels='(8,8,8)' "
                  "--config.model.decoder_channels='(8,8,8)' "
                  "--config.model.discriminator_channels='(8,8,8,8)' "
                  '--config.model.encoder_hidden_features=16 '
                  '--config.model.decoder_dense_channels=8 '
                  '--config.model.discriminator_hidden_features=16')
RUN_HERE = {
    '.venv/bin/vaegan-train --workdir=runs/synthetic': TINY_TRAINING,
    '.venv/bin/vaegan-train --config=vaegan_jax/configs/synthetic.py:vae --workdir=runs/vae':
        TINY_TRAINING,
    '.venv/bin/vaegan-prepare --image_folder=~/faces --attributes_csv=~/faces.csv '
    '--data_dir=~/data': '--name=labelled --resolution=8',
    # your own folder, start to end: prepare, then train on it (in this order: see below)
    '.venv/bin/vaegan-prepare --image_folder=~/faces --data_dir=~/data --resolution=64': '',
    '.venv/bin/vaegan-train --config=vaegan_jax/configs/celeba64.py --config.data.data_dir=~/data '
    '--config.data.name=faces --config.data.train_split=train --config.data.augmented_copies=0 '
    '--workdir=runs/faces': SMALL_NETWORKS,
}
AFTER = {'.venv/bin/vaegan-train --config=vaegan_jax/configs/celeba64.py --config.data.data_dir='
         '~/data --config.data.name=faces --config.data.train_split=train '
         '--config.data.augmented_copies=0 --workdir=runs/faces':
         '.venv/bin/vaegan-prepare --image_folder=~/faces --data_dir=~/data --resolution=64'}
HOURS = 'takes hours on 2 CPU cores, or needs runs that do'
WHY_NOT_HERE = {
    'python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/vaegan-train '
    '--workdir=runs/synthetic': 'the first command: its trainer runs here as '
                                '`.venv/bin/vaegan-train --workdir=runs/synthetic`; CI installs '
                                'the project as the second command says',
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest":
        'the second command: CI runs it (.ci/run)',
    '.venv/bin/python -m pytest': 'this suite',
    '.venv/bin/python -m pytest tests/training/test_train.py -k resume': 'part of this suite',
    '.venv/bin/python benchmarks/train_step.py': HOURS + '; tests/test_scripts.py runs it --smoke',
    '.venv/bin/python benchmarks/train_step.py --config=synthetic --dtypes=float32':
        HOURS + '; tests/test_scripts.py runs it --smoke',
    '.venv/bin/python benchmarks/train_step.py --dtypes=float32 --profile_dir=/tmp/profile':
        HOURS + '; tests/test_scripts.py runs it --smoke',
    'bash benchmarks/compare_with_torch.sh': ('download (torch) and 11 minutes; '
                                              'tests/test_scripts.py runs it with SMOKE=1'),
    '.venv/bin/python benchmarks/conv_layers.py --forms': HOURS + '; tests/test_scripts.py runs '
                                                           'it --smoke',
    '.venv/bin/python benchmarks/batched_applications.py': HOURS + '; tests/test_scripts.py runs '
                                                            'it --smoke',
    'bash experiments/gpu_benchmark.sh': 'GPU; tests/test_scripts.py runs it with SMOKE=1',
    ".venv/bin/pip install -e '.[explore]'": 'the second command installs it (the [test] extra '
                                              'holds [explore])',
    '.venv/bin/vaegan-explore --run=runs/synthetic': ('serves until stopped; tests/browser/ runs '
                                                      'it on a tiny run in Chromium'),
    '.venv/bin/vaegan-prepare --raw_dir=~/celeba --data_dir=~/tensorflow_datasets '
    '--resolution=64': "download (CelebA's raw files)",
    '.venv/bin/vaegan-prepare --tfds_name=celeb_a --data_dir=~/tensorflow_datasets '
    '--resolution=64': 'download (tfds prepares celeb_a from Google Drive)',
    '.venv/bin/vaegan-prepare --lfw_dir=~/lfw --data_dir=~/tensorflow_datasets --resolution=64':
        'download (LFW)',
    '.venv/bin/vaegan-prepare --raw_dir=~/celeba --data_dir=~/tensorflow_datasets '
    '--resolution=64 --augmented_copies=600000': "download (CelebA's raw files), and hours",
    '.venv/bin/vaegan-train --config=vaegan_jax/configs/celeba64.py --workdir=runs/celeba64 '
    '--config.data.raw_dir=~/celeba': "download (CelebA's raw files), and hours",
    '.venv/bin/vaegan-figures --figure=samples --out=figures --run=VAE=runs/vae '
    '--run=VAE_Dis_l=runs/vae_disl --run=GAN=runs/gan --run=VAE/GAN=runs/vaegan': HOURS,
    '.venv/bin/vaegan-figures --figure=reconstructions --out=figures --run=VAE=runs/vae '
    '--run=VAE/GAN=runs/vaegan': HOURS,
    '.venv/bin/vaegan-figures --figure=attributes --out=figures --run=VAE/GAN=runs/vaegan': HOURS,
    '.venv/bin/vaegan-figures --figure=conditional --out=figures --predictor=runs/predictor '
    '--run=cVAE=runs/cond_vae --run=cGAN=runs/cond_gan --run=cVAE/GAN=runs/cond_vaegan': HOURS,
    '.venv/bin/vaegan-figures --figure=quality --out=figures --run=VAE=runs/vae '
    '--run=GAN=runs/gan --run=VAE/GAN=runs/vaegan': HOURS,
    '.venv/bin/vaegan-figures --figure=quality --extractor=inception '
    '--inception_weights=pt_inception.pth --num_samples=10000 --out=figures --run=VAE=runs/vae '
    '--run=VAE/GAN=runs/vaegan': 'download (the Inception weights), and ' + HOURS,
    '.venv/bin/python experiments/reproduce_celeba.py --out=reproduction':
        HOURS + '; tests/test_scripts.py runs it --steps=2',
    '.venv/bin/vaegan-pretraining --run=VAE/GAN=runs/vaegan --run=VAE=runs/vae '
    '--labels=100,1000,10000,all --seeds=3 --out=pretraining': HOURS,
    'CELEBA_RAW=~/celeba bash experiments/train_celeba_gpu.sh': 'GPU, and a download (CelebA)',
    '.venv/bin/vaegan-synthetic --out=/tmp/raw --num_images=12000': 'the first of a GPU run; '
                                                                      'GPU',
    '.venv/bin/vaegan-train --config=vaegan_jax/configs/celeba64.py --workdir=/tmp/run '
    '--config.data.raw_dir=/tmp/raw --config.data.data_dir=/tmp/data '
    '--config.data.augmented_copies=0 --config.num_train_steps=3000 '
    '--config.image_every_steps=1000 --config.eval_every_steps=1500 '
    '--config.quality.every_steps=1500 --config.quality.num_samples=2000': 'GPU',
    'REPO=https://example.com/your/vaegan_jax.git TPU_NAME=my-v4-32 ZONE=us-central2-b '
    'SHARED=/mnt/shared bash experiments/train_celeba_tpu_pod.sh': 'TPU',
}


def read(page):
  with open(os.path.join(REPO, page)) as file:
    return file.read()


def commands(page):
  """The commands of a page's bash, sh and console code blocks, continuation lines joined."""
  found = []
  for block in re.findall(r'```(?:bash|sh|console)\n(.*?)```', read(page), re.S):
    for line in block.replace('\\\n', ' ').splitlines():
      line = re.sub(r'\s+', ' ', line.strip().removeprefix('$ '))
      if line and not line.startswith('#'):
        found.append(line)
  return found


def slug(heading):
  """GitHub's anchor of a heading."""
  text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
  return text.replace(' ', '-')


@pytest.mark.parametrize('page', PAGES)
def test_every_relative_link_and_image_resolves(page):
  text = read(page)
  for target in re.findall(r'\]\(([^)\s]+)\)', text):
    if re.match(r'[a-z]+://', target) or target.startswith('mailto:'):
      continue
    path, _, anchor = target.partition('#')
    resolved = os.path.normpath(os.path.join(REPO, os.path.dirname(page), path)) if path else (
        os.path.join(REPO, page))
    assert os.path.exists(resolved), f'{page}: {target} does not exist'
    if anchor:
      headings = re.findall(r'^#+ (.+)$', open(resolved).read(), re.M)
      assert anchor in {slug(heading) for heading in headings}, f'{page}: #{anchor} in {path}'


def test_every_config_key_is_documented_and_every_documented_key_exists():
  page = read('docs/training.md')
  table = page[page.index('## Every config key'):]
  documented = set()
  for key in re.findall(r'^\| `([a-z_.A-Z0-9]+)` \|', table, re.M):
    networks = schema.NETWORK_NAMES if 'NETWORK' in key else ('',)
    documented |= {key.replace('NETWORK', network) for network in networks}
  assert documented == set(schema.SCHEMA), (sorted(set(schema.SCHEMA) - documented),
                                            sorted(documented - set(schema.SCHEMA)))


def test_the_readme_is_at_most_200_lines_outside_its_bibtex():
  text = re.sub(r'```bibtex\n.*?```\n', '', read('README.md'), flags=re.S)
  assert len(text.splitlines()) <= 200


def test_every_command_runs_here_or_says_why_not():
  listed = set(RUN_HERE) | set(WHY_NOT_HERE)
  found = {command for page in COMMAND_PAGES for command in commands(page)}
  assert not found - listed, f'commands neither run nor explained: {sorted(found - listed)}'
  assert not listed - found, f'listed commands no page holds: {sorted(listed - found)}'


def test_the_commands_that_can_run_here_run_as_written(tmp_path):
  """In a folder laid out as a clone (its code and venv linked in) with a fresh HOME: the
  trainers with tiny sizes appended, and prepare on a small folder of faces."""
  home = tmp_path / 'home'
  rows = ['path,Smiling']
  for index in range(40):
    name = f'{"test" if index % 5 == 0 else "train"}/face_{index}.png'
    (home / 'faces' / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((90, 80, 3), 6 * index, np.uint8)).save(home / 'faces' / name)
    rows.append(f'{name},{1 if index % 2 else -1}')
  (home / 'faces.csv').write_text('\n'.join(rows) + '\n')
  clone = tmp_path / 'clone'
  clone.mkdir()
  for name in ('vaegan_jax', 'experiments', 'benchmarks'):
    (clone / name).symlink_to(os.path.join(REPO, name))
  (clone / '.venv').symlink_to(sys.prefix)
  environment = dict(os.environ, HOME=str(home), PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  # A command that needs another's output runs after it, in the same shell.
  first = set(AFTER.values())
  running = {command: subprocess.Popen(
      ['bash', '-c', ' && '.join(f'{step} {RUN_HERE[step]}' for step in (
          [AFTER[command]] if command in AFTER else []) + [command])], cwd=clone,
      env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command in RUN_HERE if command not in first}
  for command, process in running.items():
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, (command, stderr[-3000:])
  assert (clone / 'runs' / 'synthetic' / 'checkpoints' / '2').is_dir()
  assert (clone / 'runs' / 'vae' / 'checkpoints' / '2').is_dir()
  assert (home / 'data' / 'vaegan_images' / 'labelled_8' / '1.0.0' / 'dataset_info.json').exists()
  assert (clone / 'runs' / 'faces' / 'checkpoints' / '1').is_dir()
