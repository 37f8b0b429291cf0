"""The ranges a real run could use, shared by the config's keys (configs/schema.py) and the
command lines' flags of the same meaning, so that a typo (1e20 steps, a latent size of
400,000,000) is refused in one line before anything is built (SECURITY.md).

This module imports nothing, so any module may use it.
"""
SEEDS = (0, 2**32 - 1)
STEP_COUNTS = (1, 10**9)
IMAGE_COUNTS = (1, 10**7)                # images drawn, encoded, copied, measured
RESOLUTIONS = (4, 1024)
LATENT_SIZES = (1, 4096)
BATCH_SIZES = (1, 2**16)                 # also channel widths and hidden features
WORKERS = (0, 1024)                      # threads or processes (0: one per core)
IMAGE_BYTES = (1, 2**32)
IMAGE_PIXELS = (1, 10**9)
PROCESSES = (1, 10**5)
LEARNING_RATES = (0.0, 10.0)
EDIT_STRENGTHS = (-100.0, 100.0)         # multiples of an attribute vector
