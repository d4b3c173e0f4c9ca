"""The embedded default dataset: seeded, procedural polyphonic scenes in the DESIGN folder format.

No real dataset can be downloaded, so a new user trains on this at once. Each clip is coloured
background noise (pink/brown mixture with a slowly varying level) plus 0..N events of eight
classes, each with its own signature, loudness envelope and a per-event SNR measured in the
class's band against the local background. Polyphony never exceeds `max_polyphony`.

Events are annotated where they can be heard, not where their envelope is non-zero (slow fades,
swells and pass-bys make the two differ by seconds): on a 10 ms frame grid, a frame of an event
is audible when the event's energy in its class band is at least AUDIBLE_DB relative to the
energy of everything else in the clip (background and other events) in that band. A class is
annotated over the audible frames of its events (clipped to each event's samples), with gaps
shorter than MERGE_GAP_SECONDS filled. An event never audible is not annotated (its sound stays
in the clip).
docs/synthetic.md gives the definition in full and the oracle ceiling it implies.

Sources (version 3, `sources=True`, the default): each class has SOURCES_PER_CLASS fixed
sources ("this dog", "this siren"), SOURCE_SPLITS of them heard only in train, validation or
test, so validation and test measure generalisation to unseen sound sources. A source fixes its
class renderer's identity parameters (pitch, formants, resonances, pulse timing, harmonic
amplitudes, ...) up to a small per-event jitter: a Latin-hypercube design per class and dataset
seed cuts each parameter's range into SOURCES_PER_CLASS equal strata and gives every source its
own stratum of every parameter (`_Voice`), and fixes each discrete choice (wail or yelp, single or
double ring, ...) per source, balanced within each split. Recording conditions (loudness
envelope, SNR, duration, placement, background) are drawn per event as before. `sources=False`
draws every event's identity from the whole class range: version 2's output, bit-identical.
Which source each event came from is in `Source.source` and ROOT/metadata/{split}_sources.tsv.

Every clip is drawn from its own generator, seeded by (seed, split, index), so a clip does not
depend on the other clips or on the split sizes, and the same params give bit-identical files.

Modules, one job each: params (SyntheticParams: the parameters, defaults and checks), signals
(tone, noise and gate helpers), sources (source ids per split, `_Voice`), renderers (the class
renderers and render_event), audibility (band energy per frame, audible extents), scenes (one
clip: background, placement, mix, labels), writing (generate, ensure, synthetic.json), cli.

    python -m sed.data.synthetic ROOT [--seed N] [--n-train N] [--n-validation N] [--n-test N]
                                      [--clip-seconds S] [--sample-rate SR] [--no-sources] ...
"""

from sed.data.synthetic.audibility import (
    AUDIBLE_DB,
    FLOOR_DB,
    FRAME_SECONDS,
    MERGE_GAP_SECONDS,
    audible_frames,
    band_energy,
    frame_hop,
)
from sed.data.synthetic.cli import main
from sed.data.synthetic.params import DEFAULTS, SyntheticParams, check_params
from sed.data.synthetic.renderers import (
    CLASS_BANDS,
    CLASS_DURATIONS,
    CLASSES,
    class_band,
    render_event,
)
from sed.data.synthetic.scenes import (
    PEAK,
    SPLITS,
    Scene,
    Source,
    clip_name,
    render_clip,
    render_scene,
)
from sed.data.synthetic.sources import SOURCE_SPLITS, SOURCES_PER_CLASS, source_split
from sed.data.synthetic.writing import SUBTYPE, VERSION, ensure, generate
from sed.errors import SyntheticError

__all__ = [
    "AUDIBLE_DB",
    "CLASSES",
    "CLASS_BANDS",
    "CLASS_DURATIONS",
    "DEFAULTS",
    "FLOOR_DB",
    "FRAME_SECONDS",
    "MERGE_GAP_SECONDS",
    "PEAK",
    "SOURCES_PER_CLASS",
    "SOURCE_SPLITS",
    "SPLITS",
    "SUBTYPE",
    "VERSION",
    "Scene",
    "Source",
    "SyntheticError",
    "SyntheticParams",
    "audible_frames",
    "band_energy",
    "check_params",
    "class_band",
    "clip_name",
    "ensure",
    "frame_hop",
    "generate",
    "main",
    "render_clip",
    "render_event",
    "render_scene",
    "source_split",
]
