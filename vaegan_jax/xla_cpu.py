"""Which kernel library XLA:CPU gives each op: YNNPACK the reductions, its own the rest.

jaxlib 0.10 hands XLA:CPU's convolutions, dots and reductions to YNNPACK (`ynn_fusion` ops in a
profile). On this model's steps YNNPACK's convolutions are the slow part: the
discriminator's 32x32x128 -> 256 stride-2 conv ran forward in 239-254 ms with it and 125-130 ms
without it, beside PyTorch's 111 (docs/benchmarks.md). Without YNNPACK at all, though, XLA:CPU
rewrites batch norm's long reductions into reduce-windows that it runs as plain loops, 46% of
the op time of a 64x64 step. So YNNPACK keeps the reductions only.

Importing the package (vaegan_jax/__init__.py) appends the flag to XLA_FLAGS, which XLA reads
once, when jax first starts a backend; a process that ran jax before importing vaegan_jax keeps
its own choice. A user's own `--xla_cpu_experimental_ynn_fusion_type` is kept as it is:
`--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,` ... brings
YNNPACK's convolutions back. XLA aborts on a flag it does not know, and jaxlib 0.10 and 0.11 (the
range in pyproject.toml) both know this one; check it again before widening that range. The flag
concerns XLA:CPU only, so GPU and TPU steps are as they were. The CPU's forms of the
convolutions themselves are in model/cpu_convolutions.py.
"""
from __future__ import annotations

import os
from typing import MutableMapping

YNN_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
YNN_FOR_REDUCTIONS_ONLY = f'{YNN_FUSION_FLAG}=LIBRARY_FUSION_TYPE_REDUCE'


def with_kernel_choice(xla_flags: str) -> str:
  """`xla_flags` with YNN_FOR_REDUCTIONS_ONLY appended, unless they already choose YNNPACK's ops."""
  if YNN_FUSION_FLAG in xla_flags:
    return xla_flags
  return f'{xla_flags} {YNN_FOR_REDUCTIONS_ONLY}'.strip()


def choose_kernels(environ: MutableMapping[str, str] = os.environ) -> None:
  """Sets environ's XLA_FLAGS to `with_kernel_choice` of them."""
  environ['XLA_FLAGS'] = with_kernel_choice(environ.get('XLA_FLAGS', ''))
