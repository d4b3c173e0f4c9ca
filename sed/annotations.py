"""Event annotations: DESED TSV and TUT .ann files, validated row by row, and frame targets.

An event table is a DataFrame with COLUMNS (seconds). Frame i of the frame grid covers
[i * hop, (i + 1) * hop) seconds, as in DESIGN.md; `sed.features` documents the grid, and its
feature frame i is centred on (i + 0.5) * hop, the centre by which targets are decided here.
"""

import logging
import math
import re
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from sed.audio import audio_duration
from sed.errors import AnnotationError
from sed.io import write_text

__all__ = [
    "COLUMNS",
    "DURATION_COLUMNS",
    "DURATION_TOLERANCE",
    "LATE_OFFSET_LIMIT",
    "AnnotationError",
    "events_to_frames",
    "read_ann",
    "read_durations",
    "read_tsv",
    "targets_to_events",
    "write_tsv",
]

COLUMNS = ["filename", "onset", "offset", "event_label"]
DURATION_COLUMNS = ["filename", "duration"]

# Seconds by which a durations file may differ from its audio, and an event may end after its
# audio and be clipped to it without a word (rounding, a fraction of a frame).
DURATION_TOLERANCE = 0.05
# An event ending up to this many seconds after its audio is clipped with a warning that names
# the lines (annotation tools overshoot a little); one ending later is an error.
LATE_OFFSET_LIMIT = 1.0

# A row whose columns are separated by spaces: `name onset offset label` / `name duration`.
_SPACED_EVENT = re.compile(r"^(.+?)\s+([-+.\deE]+)\s+([-+.\deE]+)\s+(\S.*)$")
_SPACED_DURATION = re.compile(r"^(.+?)\s+([-+.\deE]+)$")

StrPath = str | PathLike
log = logging.getLogger(__name__)


def read_tsv(
    path: StrPath,
    classes: Sequence[str] | None = None,
    audio_dir: StrPath | None = None,
    return_filenames: bool = False,
    duration: Callable[[str], float] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, list[str]]:
    """Read a DESED TSV (filename, onset, offset, event_label) into an event table.

    Every row is validated; a row with empty onset/offset/label is a file with no events.
    Filenames stay inside the split's folder; labels that differ only in case or spacing are an
    error; repeated rows are dropped with a warning naming their lines. With `duration`
    (filename -> seconds), offsets after the end of the audio are clipped (a warning beyond
    DURATION_TOLERANCE) or, beyond LATE_OFFSET_LIMIT, refused. With return_filenames, also
    returns every file the TSV names, in order of first appearance.
    """
    rows, filenames, labels, first_line = [], {}, {}, {}
    duplicates, late = [], []
    for line, fields in _read_table(path, COLUMNS):
        if len(fields) == 1 and _spaced(_SPACED_EVENT, fields[0], 2, 3):
            raise _row_error(path, line, "columns are separated by spaces; use tabs")
        if len(fields) == 1:  # editors strip the trailing tabs of a no-event row
            fields += ["", "", ""]
        if len(fields) != len(COLUMNS):
            raise _row_error(path, line, f"expected 4 tab-separated columns, got {len(fields)}")
        name, onset, offset, label = fields
        _check_filename(path, line, name, audio_dir)
        filenames.setdefault(name)
        if not (onset or offset or label):
            continue
        event = _event(path, line, name, onset, offset, label, classes)
        _check_spelling(path, line, label, labels)
        if event in first_line:
            duplicates.append(f"line {line} repeats line {first_line[event]}")
            continue
        first_line[event] = line
        if duration is not None:
            event = _clip_to_audio(path, line, event, duration(name), late)
            if event is None:
                continue
        rows.append(event)
    if duplicates:
        log.warning("%s: duplicate event rows ignored (%s)", path, "; ".join(duplicates))
    if late:
        log.warning(
            "%s: %d event(s) end after their audio (%s %s); clipped to the audio's end",
            path,
            len(late),
            "line" if len(late) == 1 else "lines",
            ", ".join(map(str, late)),
        )
    events = _table(rows)
    return (events, list(filenames)) if return_filenames else events


def write_tsv(events: pd.DataFrame, path: StrPath, filenames: Sequence[str] | None = None) -> None:
    """Write an event table as a DESED TSV, listed files without events as empty rows; atomic."""
    missing = [column for column in COLUMNS if column not in events.columns]
    if missing:
        raise ValueError(f"cannot write {path}: the event table lacks columns {missing}")
    events = events.sort_values(["filename", "onset"], kind="stable")
    rows = [
        (name, _seconds(onset), _seconds(offset), label)
        for name, onset, offset, label in events[COLUMNS].itertuples(index=False)
    ]
    listed = set(events["filename"])
    rows += [(name, "", "", "") for name in dict.fromkeys(filenames or []) if name not in listed]
    rows.sort(key=lambda row: row[0])  # stable: keeps each file's events in onset order
    lines = ["\t".join(COLUMNS)] + ["\t".join(map(str, row)) for row in rows]
    write_text("\n".join(lines) + "\n", path)


def read_ann(
    path: StrPath, filename: str | None = None, classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a TUT annotation (TUT-SED 2016/2017, TUT-SED Synthetic 2016) into an event table.

    Per-file rows `onset offset event_label` take `filename` (default: this file's name with
    .wav). List rows `filename [scene_label] onset offset event_label [event_type identifier]`
    (TUT Sound Events 2017 meta, evaluation_setup lists) carry their own filename. Columns are
    tab-separated (decimal commas allowed), else comma- or whitespace-separated.
    """
    default_name = filename or Path(path).with_suffix(".wav").name
    rows = []
    for line, text in _read_lines(path):
        fields = _split_ann(text)
        if len(fields) < 3:
            raise _row_error(
                path,
                line,
                f"expected `onset offset event_label` or `filename [scene_label] onset offset "
                f"event_label ...`, got {len(fields)} column(s)",
            )
        first = {3: 0, 4: 1}.get(len(fields), 2)  # index of the onset column
        name = fields[0] if first else default_name
        onset, offset = (value.replace(",", ".") for value in fields[first : first + 2])
        _check_filename(path, line, name, None)
        rows.append(_event(path, line, name, onset, offset, fields[first + 2], classes))
    return _table(rows)


def read_durations(path: StrPath, audio_dir: StrPath | None = None) -> dict[str, float]:
    """Read a {split}_durations.tsv (filename, duration) into {filename: seconds}, validating rows.

    With `audio_dir`, each listed file must exist there and its duration must agree with the
    audio header (within DURATION_TOLERANCE).
    """
    durations: dict[str, float] = {}
    for line, fields in _read_table(path, DURATION_COLUMNS):
        if len(fields) == 1 and _spaced(_SPACED_DURATION, fields[0], 2):
            raise _row_error(path, line, "columns are separated by spaces; use tabs")
        if len(fields) != len(DURATION_COLUMNS):
            raise _row_error(path, line, f"expected 2 tab-separated columns, got {len(fields)}")
        name, value = fields
        _check_filename(path, line, name, audio_dir)
        if name in durations:
            raise _row_error(path, line, f"{name} is listed twice")
        seconds = _number(path, line, "duration", value)
        if seconds <= 0:
            raise _row_error(path, line, f"duration {seconds} must be positive")
        if audio_dir is not None:
            actual = audio_duration(Path(audio_dir) / name)
            if abs(actual - seconds) > DURATION_TOLERANCE:
                raise _row_error(
                    path,
                    line,
                    f"duration {seconds:g} s contradicts the audio of {name} ({actual:g} s)",
                )
        durations[name] = seconds
    return durations


def events_to_frames(
    events: pd.DataFrame, num_frames: int, hop_seconds: float, classes: Sequence[str]
) -> np.ndarray:
    """Frame targets [T, C] float32 for one file's events on the DESIGN frame grid.

    Frame i is active iff its centre (i + 0.5) * hop, where its feature window is centred, lies in
    [onset, offset); an event too short to contain a centre still marks the frame holding its
    onset. Frames past num_frames (`sed.features.num_frames`, the feature count) are cut.
    """
    column = {label: c for c, label in enumerate(classes)}
    targets = np.zeros((num_frames, len(classes)), dtype=np.float32)
    for onset, offset, label in events[COLUMNS[1:]].itertuples(index=False):
        if label not in column:
            raise AnnotationError(
                f"event label {label!r} is not one of the classes {list(classes)}"
            )
        start = math.ceil(onset / hop_seconds - 0.5)
        stop = math.ceil(offset / hop_seconds - 0.5)
        if stop <= start:
            start = math.floor(onset / hop_seconds)
            stop = start + 1
        targets[max(start, 0) : max(stop, 0), column[label]] = 1.0
    return targets


def targets_to_events(
    active: np.ndarray, hop_seconds: float, classes: Sequence[str], filename: str = ""
) -> pd.DataFrame:
    """Event table from frame activity [T, C] (nonzero = active): a run [s, e) -> [s*hop, e*hop)."""
    active = np.asarray(active).astype(bool)
    if active.ndim != 2 or active.shape[1] != len(classes):
        raise ValueError(f"expected activity of shape [T, {len(classes)}], got {active.shape}")
    edges = np.diff(active.astype(np.int8), axis=0, prepend=0, append=0).T  # [C, T + 1]
    starts, stops = np.argwhere(edges == 1), np.argwhere(edges == -1)  # (class, frame), by class
    rows = [
        (filename, start * hop_seconds, stop * hop_seconds, classes[c])
        for (c, start), (_, stop) in zip(starts, stops, strict=True)
    ]
    return _table(rows)


def _read_lines(path: StrPath) -> list[tuple[int, str]]:
    """The non-blank lines of a text file, right-stripped, with their 1-based line numbers."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"cannot read annotation file {path}: {error}") from error
    return [(n, line.rstrip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read_table(path: StrPath, header: list[str]) -> list[tuple[int, list[str]]]:
    """The rows (line number, stripped fields) of a tab-separated file after its exact header."""
    lines = _read_lines(path)
    expected = "\t".join(header)
    if not lines:
        raise AnnotationError(f"{path} is empty; expected the header {expected!r}")
    line, text = lines[0]
    if [field.strip() for field in text.split("\t")] != header:
        spaced = " (columns separated by spaces; use tabs)" if text.split() == header else ""
        raise _row_error(
            path, line, f"expected the tab-separated header {expected!r}, got {text!r}{spaced}"
        )
    return [(n, [field.strip() for field in text.split("\t")]) for n, text in lines[1:]]


def _split_ann(text: str) -> list[str]:
    """Split a .ann line on tabs, else commas, else whitespace (label = the rest of the line)."""
    if "\t" in text:
        return [field.strip() for field in text.split("\t")]
    if "," in text:
        return [field.strip() for field in text.split(",")]
    return text.split(maxsplit=2)


def _event(
    path: StrPath,
    line: int,
    name: str,
    onset: str,
    offset: str,
    label: str,
    classes: Sequence[str] | None,
) -> tuple[str, float, float, str]:
    """One validated event row: finite onset >= 0, offset > onset, a (known) label."""
    start = _number(path, line, "onset", onset)
    stop = _number(path, line, "offset", offset)
    if start < 0:
        raise _row_error(path, line, f"onset {start} is negative")
    if stop <= start:
        raise _row_error(path, line, f"offset {stop} must be greater than onset {start}")
    if not label:
        raise _row_error(path, line, "event_label is empty")
    if classes is not None and label not in classes:
        key = " ".join(label.split()).casefold()
        near = [c for c in classes if " ".join(c.split()).casefold() == key]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise _row_error(path, line, f"unknown event_label {label!r}; known: {list(classes)}{hint}")
    return name, start, stop, label


def _number(path: StrPath, line: int, column: str, text: str) -> float:
    """Parse a finite float, or raise an AnnotationError naming the file, line and column."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _row_error(path, line, f"{column} {text!r} is not a finite number")
    return value


def _check_filename(path: StrPath, line: int, name: str, audio_dir: StrPath | None) -> None:
    """Reject an empty filename, one that leaves the split's folder (absolute, a drive, `..`),
    or one whose audio is missing from audio_dir (when given)."""
    if not name:
        raise _row_error(path, line, "filename is empty")
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise _row_error(
            path,
            line,
            f"filename {name!r} leaves the split's audio folder; filenames are relative to it, "
            "without '..' or an absolute path",
        )
    if audio_dir is not None and not (Path(audio_dir) / name).is_file():
        raise _row_error(path, line, f"audio file {Path(audio_dir) / name} not found")


def _check_spelling(path: StrPath, line: int, label: str, seen: dict[str, tuple[str, int]]) -> None:
    """Refuse a label that differs from an earlier one only in case or spacing (`CAR`, `car`)."""
    key = " ".join(label.split()).casefold()
    other, other_line = seen.setdefault(key, (label, line))
    if other != label:
        raise _row_error(
            path,
            line,
            f"event_label {label!r} differs from {other!r} (line {other_line}) only in case or "
            "spacing; spell each class one way",
        )


def _clip_to_audio(
    path: StrPath,
    line: int,
    event: tuple[str, float, float, str],
    seconds: float,
    late: list[int],
) -> tuple[str, float, float, str] | None:
    """The event with its offset clipped to the audio's end (None if nothing is left); lines
    beyond DURATION_TOLERANCE go to `late`, beyond LATE_OFFSET_LIMIT are an error."""
    name, onset, offset, label = event
    if offset <= seconds:
        return event
    if offset > seconds + LATE_OFFSET_LIMIT:
        raise _row_error(
            path,
            line,
            f"offset {offset:g} s lies beyond the end of {name} ({seconds:g} s)",
        )
    if offset > seconds + DURATION_TOLERANCE:
        late.append(line)
    return (name, onset, seconds, label) if onset < seconds else None


def _spaced(pattern: re.Pattern, text: str, *groups: int) -> bool:
    """Whether `text` is a row whose columns are separated by spaces: it matches `pattern` and
    the given groups are numbers."""
    match = pattern.match(text)
    if match is None:
        return False
    try:
        return all(math.isfinite(float(match[g])) for g in groups)
    except ValueError:
        return False


def _row_error(path: StrPath, line: int, message: str) -> AnnotationError:
    return AnnotationError(f"{path}, line {line}: {message}")


def _table(rows: list[tuple[str, float, float, str]]) -> pd.DataFrame:
    """An event table with COLUMNS and their dtypes, sorted stably by filename then onset."""
    table = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"filename": str, "onset": float, "offset": float, "event_label": str}
    )
    return table.sort_values(["filename", "onset"], kind="stable", ignore_index=True)


def _seconds(value: float) -> str:
    """Seconds for a TSV: microsecond precision, no trailing zeros, never scientific notation."""
    return np.format_float_positional(float(value), precision=6, trim="-")
