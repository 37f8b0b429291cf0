"""The README's benchmark and experiment commands, run in their smoke modes so that CI catches a
script that no longer runs (nothing else calls them)."""
import gzip
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tiny_runs import REPO, subprocess_env


def run(command, returncode=0, **env):
  """Runs a script as a user would, on one device (not the tests' eight fake ones)."""
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=subprocess_env(None, **env))
  assert result.returncode == returncode, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def json_lines(output):
  return [json.loads(line) for line in output.splitlines() if line.startswith('{')]


def test_conv_layers_benchmark_smoke():
  (result,) = json_lines(run([sys.executable, 'benchmarks/conv_layers.py', '--smoke', '--forms']))
  assert [row['kind'] for row in result['layers']] == ['s2', 's1', 't']
  strided = result['layers'][0]
  for key in ('phases_gradients', 'matmul_forward', 'xla_gradients', 'phase_convs_forward',
              'space_to_depth_forward', 'winograd_forward', 'im2col_forward',
              'rows_of_taps_forward',
              'matmul_kernel_gradient', 'phase_windows_kernel_gradient', 'im2col_kernel_gradient',
              'flat_rows_kernel_gradient', 'xla_kernel_gradient'):
    assert strided[f'{key}_ms'] > 0, key


def test_the_winograd_conv_matches_xla_where_the_output_is_not_whole_tiles():
  import jax
  import numpy as np

  conv_layers = load_script('conv_layers', folder='benchmarks')
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 9, 12, 3)).astype(np.float32)      # 7 x 10 outputs: tiles 2 x 3
  kernel = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
  expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(conv_layers.winograd_conv3x3(x, kernel, 7, 10), expected,
                             rtol=1e-4, atol=1e-4)
  # Given more rows and columns than it needs, it reads only the leading ones.
  np.testing.assert_allclose(conv_layers.winograd_conv3x3(x, kernel, 4, 6),
                             expected[:, :4, :6], rtol=1e-4, atol=1e-4)


def test_the_batched_applications_benchmark_times_both_pass_styles():
  (result,) = json_lines(run([sys.executable, 'benchmarks/batched_applications.py', '--smoke']))
  assert [row['style'] for row in result['styles']] == ['feb', 'mar']
  for row in result['styles']:
    for network in ('decoder', 'discriminator'):
      separate, batched = row[f'{network}_separate_ms'], row[f'{network}_batched_ms']
      assert separate > 0 and batched > 0
      assert abs(row[f'{network}_ratio'] - separate / batched) < 1e-9


def test_the_train_step_benchmark_times_a_variant_beside_its_config(tmp_path):
  output = run([sys.executable, 'benchmarks/train_step.py', '--smoke',
                '--variant=options:decoder_ema_decay=0.9;model.spectral_norm=True;'
                'loss.r1_weight=0.5;loss.r1_every=2', f'--profile_dir={tmp_path}'])
  plain, variant = json_lines(output)
  assert (plain['variant'], variant['variant']) == ('', 'options')
  assert variant['flops_per_step'] > plain['flops_per_step']    # the overrides took effect
  assert 'options | ' in output                                  # the table of ratios
  # --profile_dir: each timed step's trace in its own folder, summarised per op kind.
  assert {os.path.basename(line['profile']['dir']) for line in (plain, variant)} == {
      'default_float32_k1', 'default_float32_k1_options'}
  for line in (plain, variant):
    profile = line['profile']
    assert profile['ops_per_step'] > 100                         # the tiny step: ~1,000 thunks
    assert any(kind == 'dot_general' for kind, _, _ in profile['kinds'])
  assert 'op kind | ms/step | share | ops/step' in output


def test_input_pipeline_benchmark_smoke():
  (result,) = json_lines(run([sys.executable, 'benchmarks/input_pipeline.py', '--smoke']))
  assert result['num_images'] == 200 and result['prepare_images_per_s'] > 0
  assert result['host_images_per_s_median'] > 0 and result['device_images_per_s_median'] > 0


def test_quality_benchmark_smoke():
  (result,) = json_lines(run([sys.executable, 'benchmarks/quality.py', '--smoke']))
  assert result['smoke'] and result['points'] == 64
  assert result['domain_images_per_s'] > 0 and result['inception_images_per_s'] > 0
  assert all(result[f'{name}_fid_s'] >= 0 for name in ('domain', 'inception'))


STAND_IN_REFERENCE = textwrap.dedent("""
    import argparse, json, sys
    parser = argparse.ArgumentParser()
    parser.add_argument('--style', choices=['sequential', 'minimal', 'authors_mar', 'authors_feb'])
    for name in ('--fc', '--batch', '--runs', '--steps'):
      parser.add_argument(name, type=int)
    parser.add_argument('--bf16', action='store_true')
    parser.add_argument('--tf32', action='store_true')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--compile', default='none')
    args = vars(parser.parse_args())
    if args['compile'] == 'reduce-overhead':    # as CUDA graphs may fail on the Feb passes
      sys.exit('RuntimeError: the stand-in cannot capture a graph')
    print(json.dumps({**args, 'peer': 'torch-' + args['style'], 'images_per_s': 10.0,
                      'ms_per_step': 100.0, 'flops_per_step': 1e12, 'warmup_s': 1.0}))
""")


def stand_in_reference(tmp_path):
  """The PyTorch reference's command line and JSON, without torch (CI has none): the scripts'
  own plumbing is what these smoke tests check."""
  reference = tmp_path / 'reference.py'
  reference.write_text(STAND_IN_REFERENCE)
  return str(reference)


def test_gpu_benchmark_script_smoke(tmp_path):
  output = run(['bash', 'experiments/gpu_benchmark.sh'], SMOKE='1', PYTHON=sys.executable,
               TORCH_REFERENCE=stand_in_reference(tmp_path), OUT=str(tmp_path / 'gpu.jsonl'))
  lines = json_lines(output)
  jax_lines = [line for line in lines if 'config_arg' in line]
  assert [(line['config_arg'], line['dtype'], line['steps_per_dispatch'])
          for line in jax_lines] == [
      ('', 'float32', 1), ('', 'float32', 16), ('mar', 'float32', 1), ('mar', 'float32', 16)]
  for result in jax_lines:          # benchmarks/train_step.py --smoke, as the script runs it
    assert result['smoke'] and result['images_per_s'] > 0
    assert result['profile']['ops_per_step'] > 0 and str(tmp_path) in result['profile']['dir']
    assert result['batch'] == 2 * result['devices']
    if result['backend'] == 'cpu':  # the CUDA plugin gives no FLOP count
      assert result['flops_per_step'] > 0 and result['achieved_flops_per_s'] > 0
  by_dispatch = {(line['config_arg'], line['steps_per_dispatch']): line['flops_per_step']
                 for line in jax_lines}
  for config_arg in ('', 'mar'):    # one step's FLOPs, whether K steps are a loop or unrolled
    assert by_dispatch[config_arg, 16] == pytest.approx(by_dispatch[config_arg, 1], rel=1e-3)
  torch_lines = [line for line in lines if 'peer' in line]
  assert [(line['style'], line['tf32'], line['bf16'], line['compile'], line['device'])
          for line in torch_lines] == [
      (style, tf32, bf16, mode, 'cpu') for style in ('authors_feb', 'authors_mar')
      for tf32, bf16, mode in ((True, False, 'none'), (False, True, 'none'),
                               (False, True, 'default'))]
  assert output.count('--compile reduce-overhead failed: RuntimeError') == 2
  assert output.count('op kind | ms/step | share | ops/step') == 4
  table = output[output.index('| step |'):].splitlines()
  assert len(table) == 2 + len(lines)                # the header, the rule, one row per line


def test_compare_with_torch_script_smoke(tmp_path):
  output = run(['bash', 'benchmarks/compare_with_torch.sh'], SMOKE='1',
               TORCH_REFERENCE=stand_in_reference(tmp_path), TORCH_PYTHON=sys.executable,
               JAX_PYTHON=sys.executable, OUT=str(tmp_path / 'compare.jsonl'))
  lines = json_lines(output)
  # Two rounds of PyTorch's eager steps of the same work, each right before JAX's, which the
  # ratios pair them with; the other PyTorch rows once, after them.
  paired = [('authors_feb', 'none'), ('authors_mar', 'none'), '', 'mar']
  assert [line.get('config_arg', (line.get('style'), line.get('compile'))) for line in lines] == (
      paired + paired + [('sequential', 'none'), ('authors_feb', 'default'),
                         ('authors_mar', 'default'), ('sequential', 'default')])
  torch_lines = [line for line in lines if 'style' in line]
  jax_lines = [line for line in lines if 'config_arg' in line]
  assert all(line['fc'] == 1024 and line['batch'] == 2 for line in torch_lines)
  assert all(line['encoder_hidden_features'] == 1024 for line in jax_lines)
  # The table pairs each JAX step with PyTorch's eager step of the same work and round (10
  # images/s here): the median of the rounds' ratios, then each round's.
  table = output[output.index('| step |'):].splitlines()
  assert len(table) == 2 + 8                         # the header, the rule, one row per config
  feb = next(row for row in table if row.startswith('| vaegan_jax celeba64.py, separate'))
  rounds = [line['images_per_s'] / 10.0 for line in jax_lines if line['config_arg'] == '']
  assert feb.split(' | ')[5] == (f'{statistics.median(rounds):.2f} ('
                                 + ', '.join(f'{r:.2f}' for r in rounds) + ')'), feb


def test_reproduction_driver_help():
  # absl's help exits with 1 after printing.
  output = run([sys.executable, 'experiments/reproduce_celeba.py', '--helpshort'], returncode=1)
  assert 'python experiments/reproduce_celeba.py --out=reproduction' in output
  for flag in ('--out', '--dataset', '--raw_dir', '--data_dir', '--steps', '--predictor_steps'):
    assert f'  {flag}:' in output


def load_script(name, folder='experiments'):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, folder, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_quality_curves_smoke(tmp_path):
  (summary,) = json_lines(run([sys.executable, 'experiments/quality_curves.py', '--smoke',
                               f'--out={tmp_path / "curves"}', f'--data_dir={tmp_path / "data"}']))
  assert set(summary) == {'VAE', 'VAE/GAN'}
  curves = json.load(open(tmp_path / 'curves' / 'curves.json'))
  for label, result in curves.items():
    assert result['steps'] == [2, 4], label
    assert all(record['fid_domain_samples'] > 0 for record in result['measurements'])
  assert os.path.exists(tmp_path / 'curves' / 'curves.png')
  os.remove(tmp_path / 'curves' / 'curves.png')
  # An empty --train redraws from the runs as they are; a run that is not there is named.
  (again,) = json_lines(run([sys.executable, 'experiments/quality_curves.py', '--smoke',
                             '--train=', f'--out={tmp_path / "curves"}']))
  assert again == summary and os.path.exists(tmp_path / 'curves' / 'curves.png')
  missing = subprocess.run([sys.executable, 'experiments/quality_curves.py', '--smoke',
                            '--train=VAE/GAN', f'--out={tmp_path / "other"}',
                            f'--data_dir={tmp_path / "data"}'], cwd=REPO, capture_output=True,
                           text=True, env=subprocess_env(None))
  assert missing.returncode != 0 and 'No run of VAE in' in missing.stderr


def test_quality_curves_helpers(tmp_path):
  curves = load_script('quality_curves')
  # Falls until step 300, then moves by less than 2%: it stopped falling at 300.
  assert curves.plateau_step([100, 200, 300, 400, 500, 600, 700, 800],
                             [90, 70, 50, 49.5, 50.2, 49.8, 49.6, 49.4]) == 300
  assert curves.plateau_step([100, 200, 300, 400], [90, 80, 70, 60]) is None   # still falling
  # Third quarter (400, 600]: 50, 60 -> 55; last (600, 800]: 40, 50 -> 45; (55 - 45) / 55.
  assert abs(curves.last_quarter_fall([100, 200, 300, 400, 500, 600, 700, 800],
                                      [90, 80, 70, 65, 50, 60, 40, 50]) - 10 / 55) < 1e-12
  assert curves.last_quarter_fall([2, 4], [9.0, 8.0]) is None        # no third-quarter step
  with open(tmp_path / 'metrics.jsonl', 'w') as file:
    for step, kind, value in ((250, 'quality', 9.0), (250, 'train', 1.0), (500, 'quality', 7.0),
                              (250, 'quality', 8.0)):
      file.write(json.dumps({'step': step, 'kind': kind, 'fid_domain_samples': value}) + '\n')
  assert [(r['step'], r['fid_domain_samples']) for r in curves.quality_curve(str(tmp_path))] == [
      (250, 8.0), (500, 7.0)]                           # the last record of a step counts


def test_the_trace_summary_counts_each_op_kind_per_step(tmp_path, monkeypatch):
  summary = load_script('trace_summary', folder='benchmarks')
  name = lambda kind, pid, text, tid=0: {'ph': 'M', 'name': kind, 'pid': pid, 'tid': tid,
                                         'args': {'name': text}}
  event = lambda text, duration, pid=1, tid=0: {'ph': 'X', 'name': text, 'dur': duration,
                                                'pid': pid, 'tid': tid, 'ts': 0}
  # The CPU: thunks named as HLO instructions; the executor's and Python's events are not ops.
  cpu = {'traceEvents': [
      name('process_name', 1, '/host:CPU'), event('ynn_fusion.3', 10), event('ynn_fusion.17', 30),
      event('dot_general', 5), event('dot_general', 5), event('ThunkExecutor::Execute', 100),
      event('$api.py:2479 block_until_ready', 100), event('end: ynn_fusion', 1),
      {'ph': 'i', 'name': 'copy.1', 'pid': 1, 'tid': 0}]}
  result = summary.summarise(cpu, steps=2)
  assert result['kinds'] == [('ynn_fusion', 0.02, 1.0), ('dot_general', 0.005, 1.0)]
  assert (result['ops_per_step'], result['op_ms_per_step']) == (2.0, 0.025)
  # A GPU: the device's kernels, not the host's events nor the device's derived lines...
  gpu = [name('process_name', 1, '/host:CPU'), name('process_name', 2, '/device:GPU:0'),
         name('thread_name', 2, 'Stream #7(Compute)', tid=7),
         name('thread_name', 2, 'XLA Modules', tid=8), event('dot_general', 50),
         event('loop_add_fusion', 4, pid=2, tid=7), event('loop_add_fusion', 2, pid=2, tid=7),
         event('void cutlass::Kernel<Gemm>(Params)', 6, pid=2, tid=7),
         event('jit_step', 1000, pid=2, tid=8)]
  result = summary.summarise({'traceEvents': gpu}, steps=1)
  assert result['kinds'] == [('loop_add_fusion', 0.006, 2.0), ('void cutlass::Kernel', 0.006, 1.0)]
  # ... and its 'XLA Ops' line alone where the trace has one.
  gpu += [name('thread_name', 2, 'XLA Ops', tid=9), event('fusion.4', 8, pid=2, tid=9)]
  assert summary.summarise({'traceEvents': gpu}, steps=1)['kinds'] == [('fusion', 0.008, 1.0)]
  # The newest trace file under the folder jax.profiler.trace was given, read within bounds.
  folder = tmp_path / 'plugins' / 'profile' / '2026_12_02'
  folder.mkdir(parents=True)
  with gzip.open(folder / 'host.trace.json.gz', 'wt') as stream:
    json.dump(cpu, stream)
  path = summary.newest_trace(str(tmp_path))
  assert summary.summarise(summary.load_trace(path), steps=2) == summary.summarise(cpu, steps=2)
  # The README's command line, on that folder: the table, then the same summary as JSON.
  output = run([sys.executable, 'benchmarks/trace_summary.py', str(tmp_path), '--steps=2'])
  assert 'ynn_fusion | 0.02 | 80.0% | 1.0' in output
  (printed,) = json_lines(output)
  assert printed['kinds'] == [['ynn_fusion', 0.02, 1.0], ['dot_general', 0.005, 1.0]]
  monkeypatch.setattr(summary, 'MAX_TRACE_BYTES', 100)
  with pytest.raises(ValueError, match='profile fewer steps'):
    summary.load_trace(path)
  with pytest.raises(FileNotFoundError, match='jax.profiler.trace'):
    summary.newest_trace(str(tmp_path / 'plugins'))


def test_kill_and_resume_script_smoke(tmp_path):
  (result,) = json_lines(run([sys.executable, 'experiments/kill_and_resume.py',
                              f'--out={tmp_path}', '--kills=2', '--steps=8']))
  assert result['kills'] == 2 and result['same_parameters'] and result['same_metrics']


def test_the_ablation_table_gives_each_variants_median_worst_and_share_of_seeds(tmp_path):
  def quality_line(step, fid, gaussian_fid, kind='quality'):
    line = {'step': step, 'kind': kind, 'fid_domain_reconstructions': 50.0,
            'checkerboard_samples': 1.0}
    for name, value in (('samples', fid), ('samples_gaussian', gaussian_fid)):
      line.update({f'fid_domain_{name}': value, f'precision_domain_{name}': 0.5,
                   f'recall_domain_{name}': 0.5})
    return json.dumps(line)

  for seed, (fid, gaussian_fid) in enumerate([(100.0, 90.0), (160.0, 80.0), (140.0, 300.0)]):
    (tmp_path / f'ours_s{seed}.jsonl').write_text(
        quality_line(500, 999.0, 999.0) + '\n' + quality_line(1000, fid, gaussian_fid) + '\n')
  output = run([sys.executable, 'experiments/ablation_table.py', f'--folder={tmp_path}'])
  # the last step's FIDs: 100, 160, 140 -> median 140, worst 160; within 150: 100 and 140
  assert '| ours | N(0, I) | 3 | 140 | 160 | 67% |' in output
  assert '| ours | gaussian | 3 | 90 | 300 | 67% |' in output
  assert '| ours | reconstructions | 3 | 50 | 50 | 100% |' in output

  # A run that kept the decoder's EMA gives the run without it as its raw decoder's lines; a
  # file of both kinds is refused, as two runs in one file would be.
  (tmp_path / 'faithful_s1.jsonl').write_text(
      quality_line(1000, 400.0, 300.0, kind='quality_raw_decoder') + '\n')
  output = run([sys.executable, 'experiments/ablation_table.py', f'--folder={tmp_path}'])
  assert '| faithful | N(0, I) | 1 | 400 | 400 | 100% |' in output
  with open(tmp_path / 'faithful_s1.jsonl', 'a') as file:
    file.write(quality_line(1000, 200.0, 200.0) + '\n')
  refused = subprocess.run([sys.executable, 'experiments/ablation_table.py',
                            f'--folder={tmp_path}'], cwd=REPO, capture_output=True, text=True)
  assert refused.returncode != 0
  assert "kinds ['quality', 'quality_raw_decoder']; it needs those of one kind" in refused.stderr


def test_the_ablation_tables_sampler_rows_are_medians_over_seeds(tmp_path):
  for seed, (fid, sharpness) in enumerate([(90.0, 0.8), (80.0, 1.0), (300.0, 0.9)]):
    line = {'step': 1000, 'kind': 'quality', 'fid_domain_reconstructions': 50.0 + seed,
            'sharpness_reconstructions': 0.7, 'checkerboard_samples': 1.0}
    for name in ('samples', 'samples_gaussian'):
      line.update({f'fid_domain_{name}': fid, f'kid_domain_{name}': 0.01 * (seed + 1),
                   f'precision_domain_{name}': 0.5, f'recall_domain_{name}': 0.1 * (seed + 1),
                   f'sharpness_{name}': sharpness, f'checkerboard_{name}': 1.2})
    (tmp_path / f'r1_s{seed}.jsonl').write_text(json.dumps(line) + '\n')
  output = run([sys.executable, 'experiments/ablation_table.py', f'--folder={tmp_path}',
                '--sampler=gaussian'])
  assert 'Samples from gaussian, medians over seeds:' in output
  assert '| r1 | 3 | 90 | 0.02 | 0.20 | 0.90 | 1.20 | 51 | 0.70 |' in output


def test_the_digits_folder_prepares_as_an_image_folder_with_ten_attributes(tmp_path):
  run([sys.executable, 'experiments/digits_folder.py', f'--out={tmp_path / "digits"}'])
  labels = (tmp_path / 'digits' / 'labels.csv').read_text().splitlines()
  assert labels[0] == 'path,' + ','.join(f'digit_{digit}' for digit in range(10))
  assert len(labels) == 1 + 2 * 1797
  assert all(row.split(',')[1:].count('1') == 1 for row in labels[1:])     # one class each
  run([sys.executable, '-m', 'vaegan_jax.data.prepare', f'--image_folder={tmp_path / "digits"}',
       f'--attributes_csv={tmp_path / "digits" / "labels.csv"}', f'--data_dir={tmp_path / "data"}',
       '--name=digits', '--resolution=32', '--channels=1'])
  from vaegan_jax.data import input_pipeline
  test = input_pipeline.open_prepared(str(tmp_path / 'data'), 'digits', 32, 1, 'test')
  assert len(test) == 1797 and test.image_shape == (32, 32, 1)
  read = test.read([0, 1])
  assert read['attributes'].sum(axis=1).tolist() == [1, 1]        # one class each
  # prepare's blur and bicubic resize, not nearest-neighbour: more than 17 grey levels.
  assert len(np.unique(test.read(range(50))['image'])) > 17
