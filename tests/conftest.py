"""Eight fake CPU devices, set before anything imports jax (STYLE.md), and one persistent
compilation cache for the whole test session.

`JAX_PLATFORMS=cuda python -m pytest` runs the suite on the local GPU(s) instead (the GPU check
in experiments/README.md); the tests that compare 8 devices with 1 then skip there, and run on
every CPU run. There XLA's deterministic GPU ops are switched on, because tests compare runs bit
for bit: without them each compilation autotunes its own cuDNN kernels, which may sum in another
order (on an H200, without them, a resumed run once differed from the uninterrupted one).

The cache: the suite compiles the same tiny train steps many times, in its workers and in the
trainers it starts as subprocesses, which inherit the environment set here. jax's persistent
compilation cache lets all of them compile each executable once. It lives in one folder per run,
removed when the run ends.
"""
import gc
import os
import shutil
import tempfile

PLATFORM = os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# XLA:CPU's code generation without LLVM's optimisations: the suite compiles hundreds of small
# executables and runs each briefly, so compiling is most of its time (a third less with this).
# The arithmetic is the same; the tests' tolerances hold. Every CPU process a test starts gets
# the same flag (tiny_runs.subprocess_env), so runs compared across processes compile alike.
FAST_COMPILE = '--xla_backend_optimization_level=0'


def cpu_xla_flags(devices: int) -> str:
  """XLA_FLAGS of a CPU process of the suite with `devices` fake devices (1: the default)."""
  return FAST_COMPILE + (f' --xla_force_host_platform_device_count={devices}' if devices > 1
                         else '')


OWN_FLAGS = cpu_xla_flags(8) if PLATFORM == 'cpu' else '--xla_gpu_deterministic_ops=true'
if OWN_FLAGS not in os.environ.get('XLA_FLAGS', ''):       # xdist's workers inherit them
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + OWN_FLAGS).strip()

# Set by the first process that loads this file, xdist's controller, before it starts the
# workers, which inherit it; that process removes it at the end.
OWN_CACHE = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
CACHE = os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    tempfile.gettempdir(), f'vaegan_jax_tests_xla_{os.getpid()}'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # noqa: E402  (must come after XLA_FLAGS)
import pytest  # noqa: E402

from vaegan_jax.training import state  # noqa: E402
from vaegan_jax.configs import tiny  # noqa: E402


needs_eight_devices = pytest.mark.skipif(
    jax.local_device_count() < 8, reason='needs 8 devices (the default CPU run has 8 fake ones)')


# The longest tests (20 s to 100 s each on 2 cores; most start trainers or scripts as
# subprocesses), run first: xdist deals the first tests out to its workers in turn, so the long
# ones overlap and the short ones fill in at the end, instead of one worker finishing alone.
LONGEST_FIRST = (
    'test_two_processes_match_one', 'test_quality_benchmark_smoke',
    'test_every_entry_planted_as_a_link_or_fifo_changes_nothing_outside',
    'test_gpu_benchmark_script_smoke',
    'test_four_steps_per_dispatch_report_at_their_steps_and_resume_bit_identical',
    'test_separate_passes_give_the_gradients_of_the_authors_graph[vaegan-loss_overrides0]',
    'test_quality_curves_smoke', 'test_the_command_writes_one_row_per_budget_method_and_run',
    'test_divergence_is_never_saved_and_the_message_says_what_was_kept[intervals0]',
    'test_four_steps_in_one_dispatch_equal_four_dispatches_of_one',
    'test_kill_and_resume_script_smoke', 'test_compare_with_torch_script_smoke',
    'test_metrics_after_a_kill_and_resume_equal_the_uninterrupted_run',
    'test_a_conditional_model_takes_the_scores_and_a_regressor_judges_it',
    'test_a_run_is_read_while_its_trainer_saves_and_rotates_every_step',
    'test_killed_run_resumes_to_identical_parameters')


def pytest_collection_modifyitems(items):
  rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
  position = lambda item: rank.get(item.name, rank.get(getattr(item, 'originalname', ''),
                                                       len(rank)))
  items.sort(key=position)                        # stable: the rest keep their order


def pytest_sessionfinish(session):
  """The run's compilation cache goes with it, once every worker is done."""
  if OWN_CACHE:
    shutil.rmtree(CACHE, ignore_errors=True)


@pytest.fixture(scope='session', autouse=True)
def _eight_devices():
  if PLATFORM == 'cpu':
    assert jax.local_device_count() == 8, 'XLA_FLAGS was set too late: jax started before conftest'


def memory_map_count() -> tuple[int, int] | None:
  """How many memory mappings this process holds, and the kernel's limit; None off Linux."""
  try:
    with open('/proc/self/maps') as maps, open('/proc/sys/vm/max_map_count') as limit:
      return sum(1 for _ in maps), int(limit.read())
  except OSError:
    return None


@pytest.fixture(autouse=True)
def _release_compiled_code():
  """XLA:CPU maps the code of every compiled executable into memory (dozens of mappings for a
  small one, thousands for a train step). A test worker that compiles hundreds of train steps
  passes the kernel's limit on mappings (vm.max_map_count, 65,530 by default), and LLVM then
  aborts the process in the middle of a compile. Past half the limit, drop jax's caches, which
  unmaps the code of every executable that nothing holds any longer."""
  yield
  counts = memory_map_count()
  if counts is not None and counts[0] > counts[1] // 2:
    jax.clear_caches()
    gc.collect()


def tiny_config(kind: str = 'vaegan', learning_rate: float | None = None, **loss_overrides):
  """The tiny config for `kind`, with loss settings and all three learning rates overridden."""
  config = tiny.get_config(kind)
  config.loss.update(loss_overrides)
  if learning_rate is not None:
    for network in state.NETWORK_NAMES:
      config.optimizer[network].learning_rate = learning_rate
  return config


def build_from(config, axis_name: str | None = None):
  """(config, networks, optimizers, initial state) for `config`."""
  training = state.create_training(config, axis_name)
  return config, training.networks, training.optimizers, training.initial_state


def build(kind: str = 'vaegan', axis_name: str | None = None, learning_rate: float | None = None,
          **loss_overrides):
  """(config, networks, optimizers, initial state) of the tiny config for `kind`."""
  return build_from(tiny_config(kind, learning_rate, **loss_overrides), axis_name)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """One prepared synthetic dataset for every tiny run of a test module (made by the first)."""
  return str(tmp_path_factory.mktemp('tfds'))
