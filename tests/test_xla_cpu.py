"""XLA:CPU's kernel choice: YNNPACK runs the reductions, XLA:CPU's own kernels the convolutions."""
import os
import subprocess
import sys

import pytest

from conftest import PLATFORM
from conv_hlo import conv_and_sum_hlo
from tiny_runs import subprocess_env
from vaegan_jax import xla_cpu

YNN_CONVOLUTIONS = (f'{xla_cpu.YNN_FUSION_FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,'
                    'LIBRARY_FUSION_TYPE_REDUCE')


def runs_where(hlo_text: str) -> tuple[bool, bool]:
  """Whether the entry computation (fusions' bodies left out) holds a convolution that XLA:CPU
  runs itself, and whether it holds an op that YNNPACK runs."""
  ops = hlo_text.split('\nENTRY ', 1)[1].split('\n}', 1)[0].splitlines()
  return any(' convolution(' in op for op in ops), any('__ynn_fusion' in op for op in ops)


def test_the_choice_is_appended_and_a_users_own_is_kept():
  assert xla_cpu.with_kernel_choice('') == xla_cpu.YNN_FOR_REDUCTIONS_ONLY
  assert xla_cpu.with_kernel_choice('--xla_force_host_platform_device_count=8') == (
      '--xla_force_host_platform_device_count=8 ' + xla_cpu.YNN_FOR_REDUCTIONS_ONLY)
  assert xla_cpu.with_kernel_choice(YNN_CONVOLUTIONS) == YNN_CONVOLUTIONS
  environ = {}
  xla_cpu.choose_kernels(environ)
  xla_cpu.choose_kernels(environ)                      # twice: appended once
  assert environ == {'XLA_FLAGS': xla_cpu.YNN_FOR_REDUCTIONS_ONLY}


@pytest.mark.skipif(PLATFORM != 'cpu', reason='a GPU run of the suite starts no CPU backend')
def test_this_process_runs_its_convolutions_itself_and_reductions_in_ynnpack():
  # conftest imported vaegan_jax before jax started its CPU backend, as every entry point does.
  assert runs_where(conv_and_sum_hlo()) == (True, True)


def test_a_users_own_choice_brings_ynnpacks_convolutions_back():
  env = subprocess_env()
  env['XLA_FLAGS'] = f'{env["XLA_FLAGS"]} {YNN_CONVOLUTIONS}'
  script = os.path.join(os.path.dirname(__file__), 'conv_hlo.py')
  text = subprocess.run([sys.executable, script], env=env, check=True, capture_output=True,
                        text=True).stdout
  assert runs_where(text) == (False, True)
