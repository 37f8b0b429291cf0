"""The networks and the losses."""
