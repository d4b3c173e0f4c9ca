"""sed: sound event detection with a label-feedback CRNN, teacher forcing and scheduled sampling."""

__version__ = "0.1.0"
