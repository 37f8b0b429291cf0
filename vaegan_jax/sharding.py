"""The one device axis: the name the pmapped steps and batch norm reduce over, and the layout
of per-device arrays that the input pipeline places on the devices."""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

DEVICE_AXIS = 'devices'


def device_sharding(devices: Sequence[jax.Device]) -> jax.sharding.NamedSharding:
  """Axis 0 split over `devices`, named DEVICE_AXIS: the layout pmap uses for its mapped inputs,
  so a step does not copy them again."""
  mesh = jax.sharding.Mesh(np.array(devices), (DEVICE_AXIS,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DEVICE_AXIS))
