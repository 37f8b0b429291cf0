"""vaegan-explore's server side (issue 49): every handler called as the page calls it, on tiny
runs, against the training loop's eval step, the attribute figure's arithmetic and the
dataset's own preprocessing. tests/browser/ drives the page itself in Chromium."""
import io
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from tiny_runs import initialised_runs
from vaegan_jax import folders
from vaegan_jax.analysis import attributes, explore_page, explorer, runs
from vaegan_jax.data import preprocess, sources
from vaegan_jax.training import checkpoints, steps

BOTH_FAILED = (None, None, None, None)


@pytest.fixture(scope='module')
def tiny_runs(tmp_path_factory):
  return initialised_runs(tmp_path_factory.mktemp('runs'), ('vaegan', 'vaegan,conditional', 'gan'))


@pytest.fixture(scope='module')
def page(tiny_runs):
  return explore_page.Page(tiny_runs['vaegan'], None, num_encode=200)


def served(page, name, *args, failed=BOTH_FAILED):
  """A handler as the server runs it: its outputs and its message line."""
  *outputs, message = page.serve(getattr(page, name), failed)(*args)
  return outputs, message


def unshown(image, side=16):
  """The page's enlarged image back at the run's resolution."""
  return image[::image.shape[0] // side, ::image.shape[1] // side]


def test_a_test_face_is_reconstructed_as_the_training_loops_eval_step_does(page):
  (face, reconstruction, z, y), message = served(page, 'test_face', 3)
  assert message.startswith('test_face:') and y is None and z.shape == (8,)
  run = page.explorer.run
  image = page.explorer.test_split.read([3])['image']
  np.testing.assert_array_equal(unshown(face), image[0])
  latents = np.zeros((1, run.config.model.latent_dim), np.float32)
  outputs, _ = steps.eval_step(run.state, preprocess.to_model_range(image), latents,
                               config=run.config, networks=run.networks, axis_name=None)
  expected = preprocess.to_uint8(outputs['reconstructions'])[0]
  assert np.abs(unshown(reconstruction).astype(int) - expected).max() <= 1


def test_sliders_at_zero_give_the_reconstruction_and_each_moves_the_face(page):
  (_, reconstruction, z, y), _ = served(page, 'test_face', 5)
  names = page.attribute_names
  (at_zero,), _ = served(page, 'edit', z, y, *[0.0] * len(names), failed=(None,))
  np.testing.assert_array_equal(at_zero, reconstruction)
  strengths = [0.0] * len(names)
  strengths[names.index('Smiling')] = 2.0
  (smiling,), _ = served(page, 'edit', z, y, *strengths, failed=(None,))
  vector = page.explorer.vectors.vectors[names.index('Smiling')]
  expected = page.explorer.decode((z + 2.0 * vector)[None])[0]
  np.testing.assert_array_equal(unshown(smiling), expected)
  assert not np.array_equal(smiling, reconstruction)


def test_the_vectors_are_the_attribute_figures_and_are_kept_once_per_checkpoint(page, tiny_runs,
                                                                                caplog):
  run, split = page.explorer.run, page.explorer.train_split
  encoded = split.read(np.arange(200))
  present = attributes.presence(encoded['attributes'])
  columns = [split.attribute_names.index(name) for name in page.attribute_names]
  # Every attribute the 200 images vary is there, and no other.
  varies = [name for column, name in enumerate(split.attribute_names)
            if 0 < present[:, column].sum() < 200]
  assert list(page.attribute_names) == varies
  expected = attributes.attribute_vectors(run.encode(encoded['image']), present[:, columns])
  np.testing.assert_allclose(page.explorer.vectors.vectors, expected, rtol=1e-5, atol=1e-6)
  kept = os.path.join(tiny_runs['vaegan'], 'explorer', 'attribute_vectors-step_0-encoded_200.npz')
  assert os.path.isfile(kept)
  # Read back, not computed again: a changed file is what the next page shows...
  arrays = dict(np.load(kept))
  arrays['vectors'] = arrays['vectors'] * 2
  np.savez(kept, **arrays)
  np.testing.assert_allclose(explorer.open_explorer(tiny_runs['vaegan'], None, 200)
                             .vectors.vectors, 2 * expected, rtol=1e-5, atol=1e-6)
  # ...and a file that is not one this run writes is computed again, with one log line.
  np.savez(kept, vectors=np.zeros((3, 2), np.float32), columns=np.arange(3))
  again = explorer.open_explorer(tiny_runs['vaegan'], None, 200)
  np.testing.assert_allclose(again.vectors.vectors, expected, rtol=1e-5, atol=1e-6)
  assert 'is not a usable attribute-vector file' in caplog.text


def test_the_interpolations_ends_are_the_two_reconstructions(page):
  (_, start, z, y), _ = served(page, 'test_face', 2)
  (_, end, _, _), _ = served(page, 'test_face', 7)
  (row, codes), message = served(page, 'interpolate', z, y, 7, 5, failed=(None, None))
  assert len(row) == 5 and message.startswith('interpolate:')
  np.testing.assert_array_equal(row[0], start)
  np.testing.assert_array_equal(row[-1], end)
  (middle,), _ = served(page, 'along', codes, 0.5, failed=(None,))
  np.testing.assert_array_equal(middle, row[2])
  _, message = served(page, 'interpolate', z, y, 7, 500, failed=(None, None))
  assert message == 'Interpolation steps must be 2 to 32, not 500.'


@pytest.mark.parametrize('prior', ['standard', 'gmm:2'])
def test_a_seed_draws_the_same_samples_and_another_seed_others(page, prior):
  (first,), _ = served(page, 'samples', prior, 4, 6, failed=(None,))
  (again,), _ = served(page, 'samples', prior, 4, 6, failed=(None,))
  (other,), _ = served(page, 'samples', prior, 5, 6, failed=(None,))
  assert len(first) == 6
  np.testing.assert_array_equal(np.stack(first), np.stack(again))
  assert not np.array_equal(np.stack(first), np.stack(other))
  latents = page.explorer.run.prior(prior).sample(6, 4)
  np.testing.assert_array_equal(unshown(first[1]), page.explorer.decode(latents)[1])


def png(width, height, mode='RGB'):
  buffer = io.BytesIO()
  Image.new(mode, (width, height), 'orange').save(buffer, format='PNG')
  return buffer.getvalue()


def test_an_upload_of_any_size_is_preprocessed_as_the_dataset_and_bad_ones_get_one_line(page):
  upload = Image.linear_gradient('L').resize((90, 60)).convert('RGB')
  buffer = io.BytesIO()
  upload.save(buffer, format='PNG')
  (face, _, z, _), message = served(page, 'upload', buffer.getvalue())
  assert message.startswith('upload:') and z.shape == (8,)
  # The synthetic faces were cut by CelebA's window: the upload is first brought to CelebA's
  # 178x218 frame (the largest centred part of that aspect: 49x60 of the 90x60), then cut.
  assert page.explorer.spec.crop == 'celeba'
  frame = upload.resize((178, 218), Image.Resampling.BICUBIC, box=(20.5, 0, 69.5, 60))
  np.testing.assert_array_equal(unshown(face), preprocess.preprocess(frame, page.explorer.spec))
  assert explorer.framed(upload, 'centre') is upload

  limits = page.explorer.limits
  try:
    page.explorer.limits = sources.ImageLimits(max_bytes=10_000, max_pixels=40_000)
    for data, expected in [
        (b'', 'No file was uploaded.'),
        (b'GIF89a not really', 'The upload is not an image PIL can read (UnidentifiedImageError); '
                               'upload a PNG or JPEG.'),
        (b'x' * 10_001, 'The upload is 10,001 bytes, over data.max_image_bytes=10,000; upload a '
                        'smaller image.'),
        (png(300, 200), 'The upload was not decoded: 300x200 is 60,000 pixels, over the limit '
                        'of 40,000 (raise it with --max_image_pixels); not decoded.')]:
      outputs, message = served(page, 'upload', data)
      assert outputs == list(BOTH_FAILED) and message == expected
  finally:
    page.explorer.limits = limits
  _, message = served(page, 'upload', png(30, 20))           # and the server still serves
  assert message.startswith('upload:')


def test_requests_before_a_face_and_bad_indices_get_one_line(page):
  assert served(page, 'edit', None, None, failed=(None,))[1] == (
      'Pick a test image or upload one first.')
  assert served(page, 'test_face', 30)[1] == (
      'Test image 30 does not exist: the test split has 30 images (0 to 29).')
  assert served(page, 'test_face', 1.5)[1] == 'Give a test image index, a whole number, not 1.5.'
  assert served(page, 'samples', 'gmm:0', 0, 4, failed=(None,))[1].startswith(
      "Unknown prior 'gmm:0'")


def test_a_conditional_run_toggles_its_attributes_with_z_fixed(tiny_runs):
  page = explore_page.Page(tiny_runs['vaegan_conditional'], None, num_encode=200)
  assert page.explorer.vectors is None and page.attribute_names == ()
  (_, reconstruction, z, y), _ = served(page, 'test_face', 4)
  run = page.explorer.run
  on = [name for name, value in zip(run.condition_on, y[0]) if value > 0]
  (same,), _ = served(page, 'toggle', z, on, failed=(None,))
  np.testing.assert_array_equal(same, reconstruction)          # the face's own y
  flipped = [name for name in run.condition_on if name not in on]
  (other,), _ = served(page, 'toggle', z, flipped, failed=(None,))
  assert not np.array_equal(other, reconstruction)
  wanted = np.array([[1.0 if name in flipped else -1.0 for name in run.condition_on]], np.float32)
  np.testing.assert_array_equal(unshown(other), page.explorer.decode(z[None], wanted)[0])


def test_a_gan_run_draws_samples_and_says_it_has_no_encoder(tiny_runs):
  page = explore_page.Page(tiny_runs['gan'], None, num_encode=200)
  assert served(page, 'samples', 'standard', 0, 4, failed=(None,))[1].startswith('samples:')
  assert 'it has no encoder' in served(page, 'test_face', 0)[1]


def test_a_missing_run_is_one_line_and_a_reload_reads_the_newest_checkpoint(tiny_runs,
                                                                          tmp_path):
  with pytest.raises(explorer.ExplorerError, match='No checkpoint in'):
    explorer.open_explorer(str(tmp_path / 'nothing'))
  workdir = str(tmp_path / 'run')
  shutil.copytree(tiny_runs['vaegan'], workdir)
  page = explore_page.Page(workdir, None, num_encode=200)
  run = runs.load_run(workdir)
  with checkpoints.Checkpointer(folders.Folder(workdir), keep=2) as saver:
    saver.save(5, run.state.replace(step=jax.numpy.asarray(5)), {'next_batch': 5}, run.config)
  (line,), message = served(page, 'reload', failed=(None,))
  assert 'at step 5' in line and message.startswith('reload:')
  shutil.rmtree(workdir)
  outputs, message = served(page, 'reload', failed=(None,))
  assert outputs == [None] and message.startswith('RunNotFound: No checkpoint in')
  assert served(page, 'test_face', 0)[1].startswith('test_face:')   # still serving
