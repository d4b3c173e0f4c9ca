"""Convert downloaded TUT sound event datasets into the DESIGN dataset folder format.

    python -m sed.data.prepare NAME SRC DEST [--validation-fraction F] [--seed N] [--link MODE]

SRC holds the archives as downloaded (the .zip files) or their extracted contents, or a mix;
nothing is fetched. NAME is one of DATASETS (`--help` lists each with its archives). DEST gets:

    DEST/audio_all/<file>                    the single copy of the audio, as distributed
                                             (binaural stays binaural; sed.audio mixes down)
    DEST/fold{k}/audio/{train,validation,test}/<file>
                                             relative symlinks into audio_all (hard links or
                                             copies where symlinks are impossible)
    DEST/fold{k}/metadata/{split}.tsv        DESED TSV; files without events as empty rows
    DEST/fold{k}/metadata/{split}_durations.tsv   every file of the split with its duration
    DEST/prepared.json                       source, classes, label map, folds, counts

The official cross-validation setups are kept: test = the fold's test list. They have no
validation set, so one is carved out of each fold's training recordings (carve_validation). A
recording in no list of fold k (no target events, so in no training list) is trained on in fold k.
TUT-SED Synthetic 2016 has one official train/validation/test split (60/20/20 mixtures); it is
written as fold1 so that every TUT config has the same shape, and --validation-fraction does not
apply to it.

Labels are normalised the same way for every dataset (normalize_label), and prepared.json keeps
the raw -> normalised map. A label outside the dataset's documented classes is an error unless
--allow-unknown-labels.

Modules, one job each: specs (the datasets, label normalisation), source (SRC's archives and
extracted folders as one tree), reading (recordings, events, splits, the validation carve),
writing (prepare: DEST's layout and prepared.json), cli.
"""

from sed.data.prepare.cli import main, summary_table
from sed.data.prepare.reading import MAX_DRAWS, carve_validation
from sed.data.prepare.source import MARKER
from sed.data.prepare.specs import DATASETS, DatasetSpec, normalize_label
from sed.data.prepare.writing import FORMAT_VERSION, LINK_MODES, prepare
from sed.errors import PrepareError

__all__ = [
    "DATASETS",
    "FORMAT_VERSION",
    "LINK_MODES",
    "MARKER",
    "MAX_DRAWS",
    "DatasetSpec",
    "PrepareError",
    "carve_validation",
    "main",
    "normalize_label",
    "prepare",
    "summary_table",
]
