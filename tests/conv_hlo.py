"""The optimised CPU HLO of a conv whose output is kept and summed (as batch norm's statistics
read a conv's output); run as a script it prints that HLO. Importing vaegan_jax (through its
layers) sets XLA_FLAGS before jax starts a backend."""
import jax
import jax.numpy as jnp

from vaegan_jax.model import convolution


def conv_and_sum(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  y = convolution.conv2d(x, kernel, 1)
  return y, jnp.sum(y, axis=(0, 1, 2))


def conv_and_sum_hlo() -> str:
  with jax.default_device(jax.devices('cpu')[0]):
    x, kernel = jnp.ones((64, 16, 16, 32)), jnp.ones((3, 3, 32, 32))
    return jax.jit(conv_and_sum).lower(x, kernel).compile().as_text()


if __name__ == '__main__':
  print(conv_and_sum_hlo())
