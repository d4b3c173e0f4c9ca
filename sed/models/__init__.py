"""Models: the Drossos et al. (2019) CRNN with label feedback."""

from sed.models.crnn import CRNN

__all__ = ["CRNN"]
