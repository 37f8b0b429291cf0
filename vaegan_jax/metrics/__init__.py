"""Sample-quality metrics and their feature spaces."""
