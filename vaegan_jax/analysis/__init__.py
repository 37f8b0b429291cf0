"""Trained runs read back: figures, pretraining probes, attribute arithmetic."""
