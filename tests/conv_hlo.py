"""The optimised CPU HLO of a conv whose output is kept and summed (as batch norm's statistics
read a conv's output); run as a script, after importing vaegan_jax, it prints that HLO."""
import jax
import jax.numpy as jnp
from jax import lax


def conv_and_sum(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  y = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y, jnp.sum(y, axis=(0, 1, 2))


def conv_and_sum_hlo() -> str:
  with jax.default_device(jax.devices('cpu')[0]):
    x, kernel = jnp.ones((64, 16, 16, 32)), jnp.ones((3, 3, 32, 32))
    return jax.jit(conv_and_sum).lower(x, kernel).compile().as_text()


if __name__ == '__main__':
  import vaegan_jax  # noqa: F401  (sets XLA_FLAGS before jax starts its backend)
  print(conv_and_sum_hlo())
