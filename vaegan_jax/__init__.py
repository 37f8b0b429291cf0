"""VAE/GAN (Larsen et al., 2016) in JAX and Flax; docs/development.md maps the package."""
from vaegan_jax import xla_cpu

xla_cpu.choose_kernels()          # before jax starts a backend: see xla_cpu.py
