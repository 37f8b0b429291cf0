r"""vaegan-explore: a trained run's latent space, live, on a local web page (Gradio).

  .venv/bin/pip install -e '.[explore]'
  .venv/bin/vaegan-explore --run=runs/synthetic          # then open http://127.0.0.1:7860

Pick a test face or upload one, move the attribute sliders (the paper's Fig. 5, live),
interpolate to a second face, draw samples from N(0, I) or a prior fitted to the codes, and
toggle a conditional run's attributes. Offline: no analytics, no share link, system fonts,
nothing fetched. `--host=0.0.0.0` serves another machine through a tunnel; the page has no
login, so serve it only where you would share the run folder.
"""
from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import time
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
import numpy as np

from vaegan_jax import console, ranges
from vaegan_jax.analysis import explorer as explorer_lib

SHOWN_SIZE = 160          # pixels: every image is repeated pixel by pixel to about this width
SLIDER_RANGE = 3.0        # attribute strengths a in [-3, 3]
STANDARD_PRIORS = ('standard', 'gaussian', 'gmm:10')


def shown(image: np.ndarray) -> np.ndarray:
  """uint8 [R, R, C] -> [S, S, 3] for the page: nearest-neighbour repeats, so nothing is
  invented, and grey repeated to RGB."""
  factor = max(1, SHOWN_SIZE // image.shape[0])
  image = image.repeat(factor, axis=0).repeat(factor, axis=1)
  return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


class Page:
  """The page's handlers, each taking and returning plain values, so that tests call them as
  the server does. Every handler returns its outputs and one message line: a request the
  explorer cannot serve gets that line (also logged), never a traceback."""

  def __init__(self, workdir: str, data_dir: str | None, num_encode: int):
    self.workdir, self.data_dir, self.num_encode = workdir, data_dir, num_encode
    self.explorer = explorer_lib.open_explorer(workdir, data_dir, num_encode)

  @property
  def attribute_names(self) -> tuple[str, ...]:
    vectors = self.explorer.vectors
    return () if vectors is None else vectors.names

  def serve(self, handler: Callable[..., tuple], failed: tuple) -> Callable[..., tuple]:
    """`handler` with its failures turned into `failed` plus the one line that says why."""
    def served(*args):
      start = time.perf_counter()
      try:
        outputs = handler(*args)
      except explorer_lib.ExplorerError as error:
        logging.warning('vaegan-explore: %s', error)
        return (*failed, str(error))
      except Exception as error:     # the server keeps serving whatever one request does
        logging.exception('vaegan-explore: %s failed', handler.__name__)
        return (*failed, f'{handler.__name__} failed: {type(error).__name__}: {error}'[:500])
      return (*outputs, f'{handler.__name__}: {1000 * (time.perf_counter() - start):.0f} ms')
    served.__name__ = handler.__name__
    return served

  # ---- handlers: (inputs) -> outputs
  def test_face(self, index: float) -> tuple:
    """Test image `index`: (face, reconstruction, its code, its y)."""
    if index is None or not float(index).is_integer():
      raise explorer_lib.ExplorerError(f'Give a test image index, a whole number, not {index}.')
    image, attributes = self.explorer.test_face(int(index))
    return self._face(image, self.explorer.conditions(attributes))

  def upload(self, data: bytes | None) -> tuple:
    """An uploaded file, preprocessed as the dataset: (face, reconstruction, code, y)."""
    if not data:
      raise explorer_lib.ExplorerError('No file was uploaded.')
    return self._face(self.explorer.uploaded_face(data), self.explorer.conditions(None))

  def _face(self, image: np.ndarray, y: np.ndarray | None) -> tuple:
    z = self.explorer.encode(image, y)
    return shown(image), shown(self.explorer.decode(z[None], y)[0]), z, y

  def edit(self, z: np.ndarray | None, y: np.ndarray | None, *strengths: float) -> tuple:
    """The face with a_i v_i added for each slider."""
    if z is None:
      raise explorer_lib.ExplorerError('Pick a test image or upload one first.')
    return (shown(self.explorer.edited(np.asarray(z), [float(a) for a in strengths], y)),)

  def interpolate(self, z: np.ndarray | None, y: np.ndarray | None, other: float, steps: float
                  ) -> tuple:
    """Decodes from the face to test image `other`: (the row, the codes)."""
    if z is None:
      raise explorer_lib.ExplorerError('Pick a test image or upload one first.')
    _, _, end, _ = self.test_face(other)
    row = self.explorer.interpolation(np.asarray(z), end, int(steps), y)
    return [shown(image) for image in row], list(row)

  def along(self, row: list | None, position: float) -> tuple:
    """The interpolation's image nearest `position` in [0, 1]."""
    if not row:
      raise explorer_lib.ExplorerError('Interpolate first.')
    return (shown(row[int(round(float(position) * (len(row) - 1)))]),)

  def samples(self, prior: str, seed: float, count: float) -> tuple:
    """Samples from `prior`, the same for the same seed."""
    if seed is None or not float(seed).is_integer() or not (
        ranges.SEEDS[0] <= seed <= ranges.SEEDS[1]):
      raise explorer_lib.ExplorerError(f'The seed must be a whole number in {ranges.SEEDS}.')
    return ([shown(image) for image in self.explorer.samples(prior, int(seed), int(count))],)

  def toggle(self, z: np.ndarray | None, on: list[str]) -> tuple:
    """A conditional run's face with its attributes set by the toggles, z fixed."""
    if z is None:
      raise explorer_lib.ExplorerError('Pick a test image or upload one first.')
    return (shown(self.explorer.toggled(np.asarray(z), on or [])),)

  def reload(self) -> tuple:
    """The run's newest committed checkpoint, read again (a run still being trained)."""
    self.explorer = explorer_lib.open_explorer(self.workdir, self.data_dir, self.num_encode)
    return (self.explorer.status(),)


def build(page: Page) -> Any:
  """The Gradio Blocks of `page`."""
  import gradio as gr      # the [explore] extra; imported here so the rest needs none of it
  run = page.explorer.run
  priors = list(dict.fromkeys([run.config.quality.get('sampler', 'standard'),
                               *STANDARD_PRIORS, *run.config.quality.priors]))
  if run.networks.encoder is None:
    priors = ['standard']
  # delete_cache: served images older than an hour are removed every 10 minutes
  with gr.Blocks(title='vaegan-explore', analytics_enabled=False,
                 delete_cache=(600, 3600)) as blocks:
    status = gr.Markdown(page.explorer.status(), elem_id='status')
    message = gr.Markdown('', elem_id='message')
    z, y, row = gr.State(None), gr.State(None), gr.State(None)
    with gr.Tab('Face'):
      with gr.Row():
        with gr.Column(min_width=200):
          index = gr.Number(value=0, precision=0, label='test image', elem_id='index')
          pick = gr.Button('Show test image', elem_id='pick')
          upload = gr.File(label='or upload an image', type='binary', elem_id='upload',
                           height=120)
          reload = gr.Button('Reload newest checkpoint', size='sm')
        face = gr.Image(label='face', interactive=False, elem_id='face')
        reconstruction = gr.Image(label='reconstruction', interactive=False,
                                  elem_id='reconstruction')
        edited = gr.Image(label='edited', interactive=False, elem_id='edited')
      sliders = []
      with gr.Row():
        for half in (page.attribute_names[::2], page.attribute_names[1::2]):
          with gr.Column():
            sliders += [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=0.25, label=name,
                                  elem_id='slider-' + re.sub(r'[^A-Za-z0-9_-]', '_', name))
                        for name in half]
      by_name = {slider.label: slider for slider in sliders}
      sliders = [by_name[name] for name in page.attribute_names]     # the vectors' order
      toggles = None
      if run.condition_on:
        toggles = gr.CheckboxGroup(list(run.condition_on), label='attributes y (z fixed)',
                                   elem_id='toggles')
    with gr.Tab('Interpolation'):
      with gr.Row():
        other = gr.Number(value=1, precision=0, label='to test image')
        steps = gr.Slider(2, explorer_lib.MAX_INTERPOLATION, value=8, step=1, label='images')
        interpolate = gr.Button('Interpolate')
      gallery = gr.Gallery(label='interpolation', columns=8)
      position = gr.Slider(0, 1, value=0, step=0.01, label='along the line')
      point = gr.Image(label='at that point', interactive=False)
    with gr.Tab('Samples'):
      with gr.Row():
        prior = gr.Dropdown(priors, value=priors[0], label='p(z)')
        seed = gr.Number(value=0, precision=0, label='seed')
        count = gr.Slider(1, explorer_lib.MAX_SAMPLES, value=16, step=1, label='samples')
        draw = gr.Button('Draw')
      samples = gr.Gallery(label='samples', columns=8)

    face_outputs = [face, reconstruction, z, y, message]
    failed_face = (None, None, None, None)
    pick.click(page.serve(page.test_face, failed_face), [index], face_outputs)
    upload.upload(page.serve(page.upload, failed_face), [upload], face_outputs)
    reload.click(page.serve(page.reload, (gr.update(),)), [], [status, message])
    edit = page.serve(page.edit, (None,))
    for slider in sliders:
      slider.change(edit, [z, y, *sliders], [edited, message])
    reconstruction.change(edit, [z, y, *sliders], [edited, message])
    if toggles is not None:
      toggles.change(page.serve(page.toggle, (None,)), [z, toggles], [edited, message])
    interpolate.click(page.serve(page.interpolate, (None, None)), [z, y, other, steps],
                      [gallery, row, message])
    position.change(page.serve(page.along, (None,)), [row, position], [point, message])
    draw.click(page.serve(page.samples, (None,)), [prior, seed, count], [samples, message])
  return blocks


def define_flags() -> None:
  flags.DEFINE_string('run', None, 'The workdir of a trained run.', required=True)
  flags.DEFINE_string('data_dir', None, "Where the run's dataset is prepared (default: the one "
                      'its config names); the test images and the prior fits need it.')
  flags.DEFINE_integer('port', 7860, 'Port to serve on.', lower_bound=1, upper_bound=65535)
  flags.DEFINE_string('host', '127.0.0.1', 'Address to serve on: 127.0.0.1 for this machine '
                      'only; 0.0.0.0 to reach it through a tunnel.')
  flags.DEFINE_integer('num_encode', 10_000, 'Training images encoded for the attribute '
                       'vectors.', lower_bound=ranges.IMAGE_COUNTS[0],
                       upper_bound=ranges.IMAGE_COUNTS[1])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'       # before gradio is imported
  if importlib.util.find_spec('gradio') is None:
    raise SystemExit("vaegan-explore: Gradio is not installed; install the extra with "
                     "`.venv/bin/pip install -e '.[explore]'`.")
  page = Page(flags.FLAGS.run, flags.FLAGS.data_dir, flags.FLAGS.num_encode)
  logging.info('%s', page.explorer.status())
  logging.info('Serving on http://%s:%d (Ctrl-C stops it).', flags.FLAGS.host, flags.FLAGS.port)
  # The images Gradio serves are files: in a folder of this server's, removed when it stops.
  with tempfile.TemporaryDirectory(prefix='vaegan-explore-') as served_files:
    os.environ.setdefault('GRADIO_TEMP_DIR', served_files)
    launch(build(page), flags.FLAGS.host, flags.FLAGS.port, page.explorer.limits.max_bytes)


def launch(blocks: Any, host: str, port: int, max_file_size: int, block: bool = True) -> None:
  """Serve offline: no share link, no analytics, no server-side rendering (a Node server)."""
  import gradio as gr
  theme = gr.themes.Default(font=('ui-sans-serif', 'system-ui', 'sans-serif'),
                            font_mono=('ui-monospace', 'monospace'))
  blocks.launch(server_name=host, server_port=port, share=False, max_file_size=max_file_size,
                ssr_mode=False, quiet=True, prevent_thread_lock=not block, theme=theme,
                footer_links=[])


def run() -> None:
  define_flags()
  console.run_main('vaegan-explore', main, failures=(explorer_lib.ExplorerError,))


if __name__ == '__main__':
  run()
