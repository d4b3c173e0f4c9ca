"""Every error a user can cause, in one family.

`SedError` is the base: the entry points' wrapper (sed.cli) reports any SedError in one line,
without a traceback, and exits 1; anything else is a bug and keeps its traceback. Each class
below names what was wrong in its message (the file, row or config key at fault). The classes
also derive from the builtin they replaced (ValueError or RuntimeError), so code that caught
those keeps working.
"""

from __future__ import annotations


class SedError(Exception):
    """An input a user supplied (a file, row, checkpoint field or config key) that cannot be used."""


class ConfigError(SedError, ValueError):
    """An entry point setting that cannot be used; the message names the config key."""


class InstallError(SedError, RuntimeError):
    """An installed package that cannot work with sed (a mismatched build, a known-bad release);
    the message names the versions and the command that fixes it."""


class AudioError(SedError, ValueError):
    """An audio file that cannot be used: missing, unreadable, truncated, empty or non-finite."""


class AnnotationError(SedError, ValueError):
    """A missing or malformed annotation file; the message names the file and, for a row, its line."""


class FeatureError(SedError, ValueError):
    """A feature parameter or input a user supplied is invalid."""


class DatasetError(SedError, ValueError):
    """Features, targets and filenames that do not fit together."""


class SyntheticError(SedError, ValueError):
    """A bad generator parameter or a root folder that must not be overwritten."""


class PrepareError(SedError, ValueError):
    """SRC lacks an archive or file, or holds something the preparation cannot use; says which."""


class CRNNConfigError(SedError, ValueError):
    """A CRNN constructor or forward argument out of range; the message names the key."""


class SamplerError(SedError, ValueError):
    """A sampler parameter out of range; the message names the parameter."""


class CheckpointError(SedError, ValueError):
    """A checkpoint that is missing, unreadable or lacks a key the caller needs."""


class ModelSpecError(SedError, ValueError):
    """A model spec (from a checkpoint or a config) naming code outside the allow-list, or
    arguments the model cannot take; raised before anything is called."""


class PostProcessError(SedError, ValueError):
    """A post-processing setting or input array that cannot be used."""


class SearchError(SedError, ValueError):
    """A post-processing search space or criterion that cannot be used; the message names the key."""


class EvaluationError(SedError, ValueError):
    """Inputs to an evaluation that cannot be evaluated (unknown label, file, bad row)."""


class PredictionError(SedError, RuntimeError):
    """Some input files could not be predicted; the others were written. Names each failure."""


class PlotError(SedError, ValueError):
    """Input data that cannot be plotted (missing columns, mismatched shapes, unknown labels)."""


class ReportError(SedError, ValueError):
    """A directory, run or option that sed.report cannot use."""


class DivergenceError(SedError, FloatingPointError):
    """Training produced a non-finite loss (a learning rate or setting that diverges); the
    message names the epoch and batch. sed.tune counts it as a failed trial, not a failed search."""


class MissingFileError(SedError, FileNotFoundError):
    """A file or folder a setting names does not exist; the message names the key and the path."""
