"""The training loop end to end on the tiny config: reports, checkpoints, exact resume after
SIGKILL, the NaN stop, and the messages for bad configs, workdirs, data and checkpoints."""
import glob
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2

from tiny_runs import REPO, kill_once_saved, leaves, run_in_subprocess, tiny_run_config
from vaegan_jax.analysis import figures, runs
from vaegan_jax.configs import schema, tiny
from vaegan_jax.data import grids
from vaegan_jax.data.dataset_layout import DataError
from vaegan_jax.model import priors, second_stage, second_stage_network
from vaegan_jax.training import checkpoints, state, train
from vaegan_jax import folders

def read_events(path):
  """Every Event in a TensorBoard file (TFRecord framing: length, crc, data, crc)."""
  events = []
  with open(path, 'rb') as file:
    while header := file.read(12):
      length = struct.unpack('<Q', header[:8])[0]
      events.append(event_pb2.Event.FromString(file.read(length)))
      file.read(4)
  return events


def test_end_to_end_writes_every_report(tmp_path, data_dir, caplog):
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(tiny_run_config(data_dir, num_train_steps=6), workdir)
  assert int(final.step) == 6
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']

  lines = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  train_lines = [line for line in lines if line['kind'] == 'train']
  assert [line['step'] for line in train_lines] == [2, 4, 6]
  for name in ('prior', 'llike', 'decoder_gan', 'discriminator', 'd_real', 'd_prior',
               'd_reconstruction', 'encoder_grad_norm', 'images_per_s'):
    assert np.isfinite(train_lines[-1][name]), name
  assert [line['step'] for line in lines if line['kind'] == 'eval'] == [3, 6]

  for name in ('samples', 'reconstructions', 'test_images'):
    grid = Image.open(os.path.join(workdir, 'images', f'{name}_00000006.png'))
    # 4x4 images of 16 px with 1-px borders, each pixel shown 6x6 (16 * 6 >= 96), and a caption.
    side = 6 * (4 * 17 + 1)
    assert grid.size == (side, side + grids.CAPTION_HEIGHT) and grid.mode == 'RGB'

  (event_file,) = glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))
  tags = {value.tag for event in read_events(event_file) for value in event.summary.value}
  assert {'train/llike', 'train/d_real', 'eval/kl', 'samples', 'reconstructions'} <= tags

  # Rerunning the finished command restores step 6, does nothing more, and says so.
  caplog.clear()
  with caplog.at_level(logging.INFO):
    again = train.train_and_evaluate(tiny_run_config(data_dir, num_train_steps=6), workdir)
  for a, b in zip(leaves(final), leaves(again)):
    np.testing.assert_array_equal(a, b)
  assert summary(caplog)[0] == ('Already finished: step 6 of 6; nothing to train. Raise '
                                '--config.num_train_steps to train further.')
  assert not os.path.exists(os.path.join(workdir, '.lock'))      # gone after a clean exit


def summary(caplog):
  """The lines that end a run, from its first ('Finished', 'Stopped', 'Already finished')."""
  lines = [record.getMessage() for record in caplog.records]
  start = max(index for index, line in enumerate(lines)
              if line.startswith(('Finished:', 'Stopped at', 'Already finished')))
  return lines[start:]


def test_a_run_ends_with_where_its_results_are(tmp_path, data_dir, caplog):
  """Issue 47, item 4: the last lines name the grids, the metrics, the last checkpoint and the
  last FID."""
  config = tiny_run_config(data_dir, num_train_steps=3)
  config.quality.extractor = 'domain'
  workdir = str(tmp_path / 'run')
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, workdir)
  lines = summary(caplog)
  fids = {line['step']: line for line in records(workdir) if line['kind'] == 'quality'}[3]
  assert lines == [
      'Finished: step 3 of 3.',
      f'  workdir:    {workdir}',
      f'  grids:      {workdir}/images/*_00000003.png (test images, reconstructions, samples)',
      f'  metrics:    {workdir}/metrics.jsonl; TensorBoard: {workdir}/tensorboard',
      f'  checkpoint: step 3, {workdir}/checkpoints/3',
      f'  quality:    FID at step 3: domain reconstructions '
      f'{fids["fid_domain_reconstructions"]:.4g}, domain samples (N(0, I)) '
      f'{fids["fid_domain_samples"]:.4g}']


def test_the_summary_leads_with_the_samplers_fid(tmp_path):
  folder = folders.Folder(str(tmp_path))
  line = {'step': 400, 'kind': 'quality', 'fid_domain_samples': 859.0,
          'fid_domain_samples_gmm10': 301.0, 'fid_domain_reconstructions': 798.0}
  (tmp_path / 'metrics.jsonl').write_text(json.dumps(line) + '\n')
  assert train.last_quality(folder, 'gmm:10') == (
      'FID at step 400: domain samples gmm10 (the sampler, gmm:10) 301, domain reconstructions '
      '798, domain samples (N(0, I)) 859')


def test_no_lock_is_left_by_a_refused_start(tmp_path, data_dir):
  """Issue 47, item 5: a start refused after the lock was taken (another config's checkpoint)
  removes the lock file, as a clean exit does."""
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_run_config(data_dir, num_train_steps=1, checkpoint_every_steps=1),
                           workdir)
  changed = tiny_run_config(data_dir, num_train_steps=2)
  changed.model.latent_dim = 16
  with pytest.raises(checkpoints.IncompatibleCheckpoint):
    train.train_and_evaluate(changed, workdir)
  assert not os.path.exists(os.path.join(workdir, '.lock'))


def test_killed_run_resumes_to_identical_parameters(tmp_path, data_dir):
  steps = 7
  config = tiny_run_config(data_dir, num_train_steps=steps, checkpoint_every_steps=2)
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / 'whole'))

  workdir = str(tmp_path / 'killed')
  process = run_in_subprocess(workdir, data_dir, steps, checkpoint_every=2)
  kill_once_saved(process, workdir, 4, steps)     # somewhere between steps 4 and 7

  resumed = train.train_and_evaluate(config, workdir)
  assert int(resumed.step) == steps
  for a, b in zip(leaves(uninterrupted), leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_a_dispatch_is_cut_short_where_an_action_falls_due():
  # The embedded default's intervals (log 50, grids 100, eval and quality 400, checkpoints 200)
  intervals = (50, 100, 400, 400, 200)
  plan = train.dispatch_plan
  assert plan(0, 16, intervals, 800) == (16, False)
  assert plan(48, 16, intervals, 800) == (2, False)      # step 50 logs
  assert plan(50, 16, intervals, 800) == (16, False)
  assert plan(796, 16, intervals, 800) == (4, False)     # the last step
  assert plan(10, 1, intervals, 800) == (1, False)
  assert plan(5, 4, (3,), 7) == (1, False)               # step 6 is due
  # R1's lazy steps (every 16) run alone, in R1's executable, and cut the dispatch before them.
  assert plan(0, 16, intervals, 800, r1_every=16) == (1, True)
  assert plan(1, 16, intervals, 800, r1_every=16) == (15, False)
  assert plan(48, 16, intervals, 800, r1_every=16) == (1, True)
  assert plan(49, 16, intervals, 800, r1_every=16) == (1, False)    # step 50 logs
  assert plan(51, 1, intervals, 800, r1_every=16) == (1, False)
  assert [plan(step, 1, intervals, 800, r1_every=4)[1] for step in range(6)] == [
      True, False, False, False, True, False]


def test_the_steps_of_a_dispatch_are_unstacked_in_order():
  history = [(2, 1, {'loss': np.float32(1.0)}),
             (5, 3, {'loss': np.array([2.0, 3.0, 4.0], np.float32)})]
  assert [(step, float(metrics['loss'])) for step, metrics in train.per_step(history)] == [
      (2, 1.0), (3, 2.0), (4, 3.0), (5, 4.0)]
  window = train.fold_window(train.EMPTY_WINDOW, train.per_step(history))
  assert window == {'steps': 4, 'sums': {'loss': 10.0}}


def test_four_steps_per_dispatch_report_at_their_steps_and_resume_bit_identical(tmp_path,
                                                                                data_dir):
  """K=4 with actions due at steps 4, 8, 12 and 14 runs dispatches of 4, 4, 4 and 2 steps and
  reports at those steps; killed and resumed, it ends bit-identical to its uninterrupted run.
  (That K steps in one dispatch make K=1's updates: test_steps.py.)"""
  steps, checkpoint_every = 14, 4
  config = tiny_run_config(data_dir, num_train_steps=steps, checkpoint_every_steps=4,
                           log_every_steps=4, image_every_steps=8, eval_every_steps=8,
                           steps_per_dispatch=4)
  config.quality.every_steps = 8
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / 'whole'))
  whole = records(str(tmp_path / 'whole'))
  assert [(line['step'], line['kind']) for line in whole] == [
      (4, 'train'), (8, 'train'), (8, 'eval'), (12, 'train'), (14, 'train'), (14, 'eval')]
  assert len(glob.glob(os.path.join(str(tmp_path / 'whole'), 'images', 'samples_*.png'))) == 2

  workdir = str(tmp_path / 'killed')
  process = run_in_subprocess(workdir, data_dir, steps, checkpoint_every, log_every=4,
                              steps_per_dispatch=4, evaluate_every=8)
  kill_once_saved(process, workdir, 4, steps)
  resumed = train.train_and_evaluate(config, workdir)
  assert int(resumed.step) == steps
  for a, b in zip(leaves(uninterrupted), leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_the_loop_runs_r1_on_its_lazy_steps_with_any_steps_per_dispatch(tmp_path, data_dir):
  """R1 every 3 of 5 steps: the loop calls R1's executable on steps 0 and 3 (dispatch_plan), so
  the logged r1 is above 0; at K=4 the dispatches are 1 (R1), 2, 1 (R1) and 1 steps, and the
  run ends where K=1's does (other executables: float32 tolerance)."""
  ends, logged = {}, {}
  for dispatch in (1, 4):
    config = tiny_run_config(data_dir, num_train_steps=5, log_every_steps=5,
                             steps_per_dispatch=dispatch)
    config.loss.update(r1_weight=0.5, r1_every=3)
    ends[dispatch] = train.train_and_evaluate(config, str(tmp_path / str(dispatch)))
    (logged[dispatch],) = [line for line in records(str(tmp_path / str(dispatch)))
                           if line['kind'] == 'train']
  assert logged[1]['step'] == 5 and np.isfinite(logged[1]['r1']) and logged[1]['r1'] > 0
  np.testing.assert_allclose(logged[4]['r1'], logged[1]['r1'], rtol=1e-4)
  for a, b in zip(leaves(ends[4]), leaves(ends[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sigterm_saves_and_stops_and_the_resumed_reports_are_the_uninterrupted_ones(tmp_path,
                                                                                   data_dir):
  """A preemption saves and does nothing else: no report that was not due at that step, so the
  resumed run's metrics.jsonl is an uninterrupted run's (it held one eval record more)."""
  workdir = str(tmp_path / 'preempted')
  process = run_in_subprocess(workdir, data_dir, 10_000, checkpoint_every=10_000,
                              evaluate_every=1000)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 300
  while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
    time.sleep(0.05)                          # training has logged step 2
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 0
  (stopped,) = saved_steps(workdir)           # saved where it stopped
  assert 2 <= stopped < 1000
  assert [line['step'] for line in records(workdir)] == list(range(2, stopped + 1, 2))

  config = tiny_run_config(data_dir, num_train_steps=stopped + 3, checkpoint_every_steps=10_000,
                           image_every_steps=1000, eval_every_steps=1000)
  config.quality.every_steps = 1000
  train.train_and_evaluate(config, workdir)
  train.train_and_evaluate(config, str(tmp_path / 'whole'))
  assert records(workdir) == records(str(tmp_path / 'whole'))


def saved_steps(workdir):
  return sorted(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints'))
                if name.isdigit())


@pytest.mark.parametrize('intervals', [dict(checkpoint_every_steps=1, eval_every_steps=1,
                                            log_every_steps=1), {}])
def test_divergence_is_never_saved_and_the_message_says_what_was_kept(tmp_path, data_dir,
                                                                      intervals, monkeypatch):
  # The run: the decoder's learning rate at 1e30 makes its weights ~1e30 after step 1
  # and the eval at step 1 NaN; with the tiny config's intervals the first check is at step 2.
  # (The schema refuses such a rate: its range is lifted here, to make a run diverge at once.)
  monkeypatch.setitem(schema.SCHEMA, 'optimizer.decoder.learning_rate',
                      schema.Setting(schema.number(0, 1e30), resumable=True))
  config = tiny_run_config(data_dir, num_train_steps=6, **intervals)
  config.optimizer.decoder.learning_rate = 1e30
  workdir = str(tmp_path / 'diverged')
  with pytest.raises(train.NonFiniteLoss) as error:
    train.train_and_evaluate(config, workdir)
  message = str(error.value)
  saved = saved_steps(workdir) if os.path.isdir(os.path.join(workdir, 'checkpoints')) else []
  if saved:
    assert f'the last checkpoint, step {saved[-1]}, is kept' in message, message
  else:
    assert 'no checkpoint was saved' in message, message
  # The logit form is advised only where the config does not use it already.
  assert ('gan_form="logit"' in message) == (config.loss.gan_form != 'logit')
  target = state.create_training(config).initial_state
  with checkpoints.CheckpointReader(os.path.join(workdir, 'checkpoints')) as reader:
    for step in saved:                     # whatever was saved is finite
      restored = reader._read(step, jax.device_get(target))[0]
      assert checkpoints.first_non_finite_leaf(restored) is None

  # As the message advises: a lower learning rate resumes (or starts) the same workdir.
  config.optimizer.decoder.learning_rate = 1e-4
  assert int(train.train_and_evaluate(config, workdir).step) == 6


def test_a_non_finite_state_is_refused_by_save(tmp_path, data_dir):
  config = tiny_run_config(data_dir)
  good = state.create_training(config).initial_state
  bad = good.replace(decoder=good.decoder.replace(params=jax.tree.map(
      lambda leaf: leaf.at[..., 0].set(np.nan), good.decoder.params)))
  checkpointer = checkpoints.Checkpointer(folders.Folder(str(tmp_path)), keep=2)
  checkpointer.save(1, good, {'next_batch': 1}, config)
  with pytest.raises(checkpoints.NonFiniteState, match=r'step 2 .*decoder'):
    checkpointer.save(2, bad, {'next_batch': 2}, config)
  checkpointer.close()
  assert saved_steps(str(tmp_path)) == [1]


def test_incompatible_checkpoint_names_the_difference(tmp_path, data_dir):
  config = tiny_run_config(data_dir, num_train_steps=1, checkpoint_every_steps=1)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  changed = tiny_run_config(data_dir, num_train_steps=2)
  changed.model.latent_dim = 16
  changed.loss.gamma = 1.0
  with pytest.raises(checkpoints.IncompatibleCheckpoint) as error:
    train.train_and_evaluate(changed, workdir)
  message = str(error.value)
  assert 'model.latent_dim: checkpoint 8, config 16' in message
  assert 'loss.gamma: checkpoint 1e-05, config 1.0' in message
  assert 'new --workdir' in message and 'num_train_steps' not in message

  # The learning rate and its schedule change neither the state's arrays nor the batches.
  lowered = tiny_run_config(data_dir, num_train_steps=2)
  lowered.optimizer.encoder.learning_rate = 1e-5
  lowered.optimizer.discriminator.schedule = 'anneal'
  assert int(train.train_and_evaluate(lowered, workdir).step) == 2


def test_bad_config_values_fail_before_compiling(tmp_path, data_dir):
  config = tiny_run_config(data_dir)
  config.model.kind = 'vaegans'
  with pytest.raises(ValueError, match=r"model.kind='vaegans' is not a valid choice; choose one"):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  config = tiny_run_config(data_dir)
  config.loss.feature_layer = 'conv9'
  with pytest.raises(ValueError, match='conv9'):
    train.train_and_evaluate(config, str(tmp_path / 'b'))
  config = tiny_run_config(data_dir)
  config.data.flip = 'vertical'
  with pytest.raises(ValueError, match="data.flip='vertical' is not a valid choice; choose one"):
    train.train_and_evaluate(config, str(tmp_path / 'c'))
  if 12 % jax.local_device_count():  # always on the CPU run's 8 devices; one GPU takes any batch
    config = tiny_run_config(data_dir, global_batch_size=12)
    with pytest.raises(ValueError, match=f'does not split over {jax.local_device_count()} devices'):
      train.train_and_evaluate(config, str(tmp_path / 'd'))
  assert not os.path.exists(str(tmp_path / 'a' / 'checkpoints'))


def test_unwritable_workdir_and_missing_data_are_reported(tmp_path, data_dir):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(OSError, match='Cannot write to the workdir'):
    train.train_and_evaluate(tiny_run_config(data_dir), str(blocker / 'run'))
  config = tiny_run_config(str(tmp_path / 'empty'))
  config.data.synthetic_images = 0
  with pytest.raises(DataError, match='No prepared dataset synthetic_16'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_command_line_rejects_unknown_keys(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'vaegan_jax.training.main', f'--workdir={tmp_path}',
       '--config=vaegan_jax/configs/tiny.py', '--config.model.latent_dimm=3'],
      cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode != 0
  assert "Unknown config key 'model.latent_dimm'" in result.stderr
  assert 'model.latent_dim,' in result.stderr and 'Traceback' not in result.stderr


def test_conditional_run_trains_on_the_batch_attributes_and_reloads(tmp_path, data_dir):
  config = tiny.get_config('vaegan,conditional')
  config.data.data_dir = data_dir
  config.num_train_steps = 3
  config.decoder_ema_decay = 0.5             # [ours]: kept in the checkpoint, read back with it
  workdir = str(tmp_path / 'conditional')
  final = train.train_and_evaluate(config, workdir)
  assert int(final.step) == 3 and final.decoder_ema is not None
  lines = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert all(np.isfinite(line['llike']) for line in lines if line['kind'] == 'train')
  assert os.path.exists(os.path.join(workdir, 'images', 'samples_00000003.png'))
  run = runs.load_run(workdir)
  assert run.condition_on == tuple(config.model.condition_on)
  assert jax.tree.structure(final) == jax.tree.structure(run.state)
  for a, b in zip(leaves(final), leaves(run.state)):
    np.testing.assert_array_equal(a, b)


def test_condition_on_an_attribute_the_data_lacks_is_named(tmp_path, data_dir):
  config = tiny.get_config('gan,conditional')
  config.data.data_dir = data_dir
  config.model.condition_on = ('Male', 'Sunglasses')
  with pytest.raises(DataError, match=r"model.condition_on names \['Sunglasses'\], which "
                                              r'this dataset does not have. Its attributes: '
                                              r'5_o_Clock_Shadow'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(str(tmp_path / 'run' / 'checkpoints'))


def test_the_loop_measures_sample_quality_in_the_domain_feature_space(tmp_path, data_dir,
                                                                       monkeypatch):
  config = tiny_run_config(data_dir, num_train_steps=3)
  config.quality.extractor = 'domain'
  config.quality.update(priors=('gaussian', 'gmm:2', 'vae2'), prior_codes=40)
  monkeypatch.setattr(second_stage_network, 'WIDTH', 16)       # a second stage in seconds
  monkeypatch.setattr(second_stage, 'STEPS', 20)
  workdir = str(tmp_path / 'quality')
  train.train_and_evaluate(config, workdir)
  lines = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  (measured,) = [line for line in lines if line['kind'] == 'quality']
  assert measured['step'] == 3
  for label in ('samples', 'reconstructions', 'samples_gaussian', 'samples_gmm2', 'samples_vae2'):
    for metric in ('fid', 'kid', 'kid_std', 'precision', 'recall'):
      assert np.isfinite(measured[f'{metric}_domain_{label}']), (metric, label)
    assert 0 <= measured[f'precision_domain_{label}'] <= 1
    assert measured[f'fid_domain_{label}'] > 0
    assert np.isfinite(measured[f'checkerboard_{label}']) and measured[f'checkerboard_{label}'] > 0
    assert np.isfinite(measured[f'sharpness_{label}']) and measured[f'sharpness_{label}'] > 0
  folder = os.path.join(data_dir, 'vaegan_extractors', 'synthetic_16', 'domain')
  assert os.path.exists(os.path.join(folder, 'predictor.json'))      # trained once, cached
  assert os.path.exists(os.path.join(folder, 'reference_test_32.npz'))

  # The fits the loop kept for step 3 are of the encoder's means of the first 40 training
  # images: as runs.Run.prior fits them afresh once the kept file is gone.
  assert sorted(os.listdir(os.path.join(workdir, 'priors'))) == [
      'gaussian-step_3.npz', 'gmm2-step_3.npz', 'vae2-step_3.npz']
  run = runs.load_run(workdir)
  assert isinstance(run.prior('vae2'), priors.SecondStage)       # the kept file, read as its kind
  kept = run.prior('gaussian')
  os.remove(priors.fit_path(workdir, 'gaussian', 3))
  again = run.prior('gaussian')
  np.testing.assert_allclose(again.means, kept.means, atol=1e-5)
  np.testing.assert_allclose(again.scales, kept.scales, atol=1e-4)
  assert os.path.exists(priors.fit_path(workdir, 'gaussian', 3))     # kept again


def test_a_run_with_the_decoder_ema_also_measures_the_run_without_it(tmp_path, data_dir):
  # The EMA changes nothing training sees, so quality.raw_decoder's lines must be the numbers a
  # run without the EMA measures, prior fits included; the EMA's own lines must differ.
  def quality_lines(name, raw_decoder=False, **overrides):
    config = tiny_run_config(data_dir, num_train_steps=4)
    config.quality.update(extractor='domain', priors=('gaussian',), prior_codes=40,
                          raw_decoder=raw_decoder)
    config.update(overrides)
    train.train_and_evaluate(config, str(tmp_path / name))
    lines = [json.loads(line) for line in open(tmp_path / name / 'metrics.jsonl')]
    return {line['kind']: line for line in lines if line['kind'].startswith('quality')}

  plain = quality_lines('plain')
  both = quality_lines('both', raw_decoder=True, decoder_ema_decay=0.5)
  assert sorted(plain) == ['quality'] and sorted(both) == ['quality', 'quality_raw_decoder']
  raw, ema = both['quality_raw_decoder'], both['quality']
  assert raw.keys() == plain['quality'].keys()
  for key in plain['quality']:
    if key != 'kind':
      np.testing.assert_allclose(raw[key], plain['quality'][key], rtol=1e-4, err_msg=key)
  assert abs(ema['fid_domain_samples'] - raw['fid_domain_samples']) > 1e-3 * raw[
      'fid_domain_samples']


def records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as file:
    lines = [json.loads(line) for line in file]
  for line in lines:
    line.pop('images_per_s', None)           # the one value that depends on the clock
  return lines


def test_metrics_after_a_kill_and_resume_equal_the_uninterrupted_run(tmp_path, data_dir):
  # Checkpoints every 2 steps and reports every 3, so that the report window in progress is
  # saved with a checkpoint and continued after the resume.
  steps, checkpoint_every, log_every = 9, 2, 3
  config = tiny_run_config(data_dir, num_train_steps=steps,
                           checkpoint_every_steps=checkpoint_every, log_every_steps=log_every)
  train.train_and_evaluate(config, str(tmp_path / 'whole'))

  workdir = str(tmp_path / 'killed')
  for kill_after in (4, 6):
    process = run_in_subprocess(workdir, data_dir, steps, checkpoint_every, log_every)
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.isdir(
        os.path.join(workdir, 'checkpoints', str(kill_after))):
      time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
  train.train_and_evaluate(config, workdir)

  whole, resumed = records(str(tmp_path / 'whole')), records(workdir)
  assert [(line['step'], line['kind']) for line in resumed] == [
      (line['step'], line['kind']) for line in whole]
  for expected, got in zip(whole, resumed):
    assert got == expected, (got['step'], got['kind'])


def test_the_sampler_draws_the_grids_from_its_newest_fit_and_a_resume_draws_the_same(tmp_path,
                                                                                   data_dir):
  # Fits at steps 2, 4 and 6 (quality.every_steps), grids at every step: step 1's sampler grid
  # is N(0, I)'s, labelled so; later ones decode the newest fit. A run resumed from step 2, with
  # the later fits still in its folder, must draw the uninterrupted run's grids again.
  config = tiny_run_config(data_dir, num_train_steps=6, checkpoint_every_steps=2,
                           image_every_steps=1, keep_checkpoints=5)
  config.quality.update(sampler='gmm:2', every_steps=2, prior_codes=40)
  whole = tmp_path / 'whole'
  train.train_and_evaluate(config, str(whole))
  assert sorted(os.listdir(whole / 'priors')) == [f'gmm2-step_{s}.npz' for s in (2, 4, 6)]
  grid = lambda folder, name, step: np.asarray(Image.open(folder / 'images' /
                                                          f'{name}_{step:08d}.png'))
  caption = slice(0, grids.CAPTION_HEIGHT)
  images = slice(grids.CAPTION_HEIGHT, None)
  # Step 1: the same images as N(0, I)'s grid, under another caption.
  np.testing.assert_array_equal(grid(whole, 'samples_gmm2', 1)[images],
                                grid(whole, 'samples', 1)[images])
  assert not np.array_equal(grid(whole, 'samples_gmm2', 1)[caption],
                            grid(whole, 'samples', 1)[caption])
  for step in (2, 3, 6):                     # from the fit: other images than N(0, I)'s
    assert not np.array_equal(grid(whole, 'samples_gmm2', step)[images],
                              grid(whole, 'samples', step)[images]), step

  resumed = tmp_path / 'resumed'
  shutil.copytree(whole, resumed)
  for step in (4, 6):
    shutil.rmtree(resumed / 'checkpoints' / str(step))
  expected = {step: grid(whole, 'samples_gmm2', step) for step in range(3, 7)}
  for step in range(3, 7):
    os.remove(resumed / 'images' / f'samples_gmm2_{step:08d}.png')
  train.train_and_evaluate(config, str(resumed))
  for step, image in expected.items():
    np.testing.assert_array_equal(grid(resumed, 'samples_gmm2', step), image, err_msg=step)

  # vaegan-figures draws from the run's sampler unless told otherwise.
  written = figures.make_figure('samples', {'run': str(whole)}, str(tmp_path / 'figures'),
                                count=4, seed=3)
  numbers = json.loads(open(written['samples']['json']).read())
  assert numbers['prior'] == {'run': 'gmm:2'}
  run = runs.load_run(str(whole))
  drawn = grids.image_grid(run.decode(run.prior('gmm:2').sample(4, 3)), columns=4)
  shown = np.asarray(Image.open(written['samples']['png']).convert('RGB'))
  np.testing.assert_array_equal(shown[:drawn.shape[0], -drawn.shape[1]:], drawn)
