"""`python -m sed.predict checkpoint=FILE input=FILE_OR_DIR [output=events.tsv]`: apply a trained
model to new audio of any sample rate and channel count and write a DESED event table."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from sed.annotations import write_tsv
from sed.audio import AUDIO_EXTENSIONS, load_audio
from sed.inference import load_trained, predict_waveform, resolve_device
from sed.postprocess import probs_to_events

log = logging.getLogger(__name__)


def audio_files(path: str | Path) -> tuple[Path, list[str]]:
    """(base folder, file names relative to it) for one audio file or a folder searched recursively."""
    path = Path(path)
    if path.is_file():
        return path.parent, [path.name]
    if not path.is_dir():
        raise FileNotFoundError(f"input={path} is neither an audio file nor a folder")
    names = sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    if not names:
        raise FileNotFoundError(
            f"input={path} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
        )
    return path, names


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Run the checkpoint over every input file; write the event table (and probabilities)."""
    device = resolve_device(cfg.device)
    trained = load_trained(cfg.checkpoint, device)
    pp = trained.postprocessing
    if cfg.threshold is not None:
        pp.threshold = cfg.threshold
    if cfg.median_seconds is not None:
        pp.median_seconds, pp.median_frames = cfg.median_seconds, None
    base, names = audio_files(cfg.input)
    output = Path(cfg.output)
    prob_dir = output.with_name(output.stem + "_probabilities")
    probs = {}
    for name in tqdm(names, desc="predict"):
        waveform = load_audio(base / name, trained.logmel.params["sample_rate"])
        probs[name] = predict_waveform(trained, waveform, device)
        if cfg.save_probabilities:
            target = prob_dir / (name + ".npy")
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, probs[name])
    events = probs_to_events(probs, trained.hop_seconds, trained.classes, pp)
    write_tsv(events, output, filenames=names)
    log.info("%d events in %d files -> %s", len(events), len(names), output)
    if cfg.save_probabilities:
        (prob_dir / "classes.txt").write_text("\n".join(trained.classes) + "\n")
        log.info("frame probabilities [T, C] (hop %.4f s) -> %s", trained.hop_seconds, prob_dir)
    return events


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    predict(cfg)


if __name__ == "__main__":
    main()
