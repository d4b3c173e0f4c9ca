"""`python -m sed.predict checkpoint=FILE input=FILE_OR_DIR [output=events.tsv]`: apply a trained
model to new audio of any sample rate and channel count and write a DESED event table.

A file longer than `chunk_seconds` is read and predicted a chunk at a time (`TrainedModel.stream`),
so memory is bounded by the chunk, not the recording, with the probabilities of one pass (with
save_probabilities they go into their .npy file as they come, a memory map). A file that cannot
be read is skipped: the others are predicted and written, the failures are listed, and the exit
status is 1.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from sed.annotations import write_tsv
from sed.audio import AUDIO_EXTENSIONS, AudioError, AudioReader, open_audio
from sed.cli import Job, run_job
from sed.environment import write_environment
from sed.errors import ConfigError, MissingFileError, PredictionError
from sed.features import FeatureError
from sed.inference import TrainedModel, load_trained, resolve_device
from sed.io import atomic_write, write_text
from sed.postprocess import probs_to_events
from sed.runs import signature

log = logging.getLogger(__name__)

FILES_PER_GROUP = 256


def audio_files(path: str | Path) -> tuple[Path, list[str]]:
    """(base folder, file names relative to it) for one audio file or a folder searched recursively."""
    path = Path(path)
    if path.is_file():
        return path.parent, [path.name]
    if not path.is_dir():
        raise MissingFileError(f"input={path} is neither an audio file nor a folder")
    names = sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    if not names:
        raise MissingFileError(f"input={path} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return path, names


def output_paths(cfg: DictConfig) -> tuple[Path, Path | None]:
    """(event table, probabilities folder or None), refused before any work if unusable."""
    output = Path(cfg.output)
    if output.is_dir():
        raise ConfigError(
            f"output={output} is a folder; give a file, e.g. output={output}/events.tsv"
        )
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"output={output}: {parent} is a file, not a folder")
    if not cfg.save_probabilities:
        return output, None
    prob_dir = output.with_name(output.stem + "_probabilities")
    if prob_dir.exists() and not prob_dir.is_dir():
        raise ConfigError(f"save_probabilities: {prob_dir} exists and is not a folder")
    return output, prob_dir


def chunk_frames(cfg: DictConfig, trained: TrainedModel) -> int | None:
    """Frames per streamed chunk from cfg.chunk_seconds (null: never stream), or None when the
    model cannot be streamed (then files run in one pass, as evaluation runs them)."""
    seconds = cfg.get("chunk_seconds")
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ConfigError(f"chunk_seconds must be a positive number of seconds or null, got "
                          f"{seconds!r}")  # fmt: skip
    if not trained.streams:
        log.info("this model runs whole files in one pass (it cannot be streamed)")
        return None
    return max(1, round(seconds / trained.hop_seconds))


def stream_file(
    trained: TrainedModel,
    reader: AudioReader,
    chunk: int,
    name: str,
    prob_dir: Path | None = None,
    mapped: dict[str, Path] | None = None,
) -> np.ndarray:
    """Probabilities of one long file, a chunk at a time; logs the throughput. With `prob_dir`
    they are written as they come into a memory-mapped .npy at a temporary name beside
    prob_dir/NAME.npy, recorded in `mapped` (name -> file) for `save_probabilities`."""
    began = time.perf_counter()
    out = None
    if prob_dir is not None and mapped is not None:
        path = prob_dir / (name + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        mapped[name] = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        shape = trained.stream_shape(reader.num_samples)
        out = np.lib.format.open_memmap(mapped[name], "w+", np.float32, shape)
    try:
        probs = trained.stream(reader, chunk, progress=True, out=out)
    except BaseException:
        if name in (mapped or {}):
            mapped.pop(name).unlink(missing_ok=True)
        raise
    seconds = reader.num_samples / reader.sample_rate
    log.info("%s: %.0f s of audio streamed in %.1f s", name, seconds, time.perf_counter() - began)
    return probs


def save_probabilities(
    probs: dict[str, np.ndarray], prob_dir: Path, mapped: dict[str, Path]
) -> None:
    """Write probs[name] to prob_dir/NAME.npy for every file: the memory-mapped ones (`mapped`,
    name -> temporary file, from `stream_file`) flushed and renamed, the others written
    atomically."""
    for name, p in probs.items():
        path = prob_dir / (name + ".npy")
        if name in mapped:
            p.flush()
            os.replace(mapped.pop(name), path)
        else:
            atomic_write(path, partial(np.save, arr=p, allow_pickle=False))


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Run the checkpoint over every input file; write the event table (and probabilities).

    Features, batching, autocast and post-processing overrides are those of sed.evaluate, so a
    file gets the probabilities that evaluation gives it (files longer than chunk_seconds are
    streamed, with those probabilities to float tolerance); offsets never pass a file's end.
    Files that cannot be read are skipped and raised as one PredictionError after the others
    are written.
    """
    output, prob_dir = output_paths(cfg)
    base, names = audio_files(cfg.input)
    trained = load_trained(
        cfg.checkpoint,
        resolve_device(cfg.device),
        batch_size=cfg.batch_size,
        amp=cfg.amp,
        postprocess=OmegaConf.to_container(cfg.postprocess, resolve=True),
    )
    pp = trained.postprocessing
    sample_rate = trained.logmel.params["sample_rate"]
    chunk = chunk_frames(cfg, trained)
    probs: dict[str, np.ndarray] = {}
    mapped: dict[str, Path] = {}  # memory-mapped probabilities (save_probabilities)
    durations: dict[str, float] = {}
    failures: dict[str, str] = {}
    try:
        with tqdm(total=len(names), desc="predict", unit="file", disable=None) as bar:
            # A group of files at a time bounds the features held in memory.
            for start in range(0, len(names), FILES_PER_GROUP):
                group, features = [], []
                for name in names[start : start + FILES_PER_GROUP]:
                    try:
                        with open_audio(base / name, sample_rate) as reader:
                            samples = reader.num_samples
                            if chunk is not None and samples > chunk * trained.logmel.hop_length:
                                probs[name] = stream_file(
                                    trained, reader, chunk, name, prob_dir, mapped
                                )
                            else:
                                features.append(trained.features(reader.read(0, samples)))
                                group.append(name)
                    except (AudioError, FeatureError) as err:
                        failures[name] = str(err)
                        log.warning("skipped %s: %s", name, err)
                    else:
                        durations[name] = samples / sample_rate
                    bar.update()
                if group:
                    probs.update(trained.predict(features, group))
        predicted = [name for name in names if name in probs]
        events = probs_to_events(probs, trained.hop_seconds, trained.classes, pp, durations)
        if predicted:
            write_tsv(events, output, filenames=predicted)
            write_environment(side_file(output, "environment.json"), trained.device)
            log.info("%d events in %d files -> %s", len(events), len(predicted), output)
        if prob_dir is not None and predicted:
            save_probabilities(probs, prob_dir, mapped)
            write_text("\n".join(trained.classes) + "\n", prob_dir / "classes.txt")
            log.info("frame probabilities [T, C] (hop %.4f s) -> %s", trained.hop_seconds, prob_dir)
    finally:  # an interrupted run leaves no half-written probabilities behind
        for tmp in mapped.values():
            tmp.unlink(missing_ok=True)
    if failures:
        done = f"the other {len(predicted)} are in {output}" if predicted else "nothing written"
        listing = "\n".join(f"  {name}: {error}" for name, error in failures.items())
        raise PredictionError(
            f"{len(failures)} of {len(names)} input file(s) could not be read ({done}):\n{listing}"
        )
    return events


def side_file(output: Path, suffix: str) -> Path:
    """OUTPUT_STEM.SUFFIX next to the event table (environment.json, status.json)."""
    return output.with_name(f"{output.stem}.{suffix}")


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point (sed.cli.run_job): a bad input is reported in one line (no traceback),
    exit status 1; OUTPUT_STEM.status.json says how the run ended, unless it was refused before
    it wrote the event table (then the status.json found there, if any, stays as it was)."""
    output = Path(cfg.output)
    status = side_file(output.absolute(), "status.json")  # absolute: output=. has a name
    found = signature(output)
    job = Job("predict", status, started=lambda: signature(output) != found)
    run_job(job, lambda: predict(cfg))


if __name__ == "__main__":
    main()
