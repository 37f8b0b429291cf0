"""Reading, preparing and feeding datasets."""
