"""`python -m sed.predict checkpoint=FILE input=FILE_OR_DIR [output=events.tsv]`: apply a trained
model to new audio of any sample rate and channel count and write a DESED event table."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from sed.annotations import write_tsv
from sed.audio import AUDIO_EXTENSIONS, load_audio
from sed.inference import load_trained, resolve_device
from sed.io import atomic_write, write_text
from sed.postprocess import probs_to_events

log = logging.getLogger(__name__)

FILES_PER_GROUP = 256


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
    """Run the checkpoint over every input file; write the event table (and probabilities).

    Features, batching, autocast and post-processing overrides are those of sed.evaluate, so a
    file gets the probabilities that evaluation gives it.
    """
    trained = load_trained(
        cfg.checkpoint, resolve_device(cfg.device), batch_size=cfg.batch_size, amp=cfg.amp
    )
    pp = trained.postprocessing.with_overrides(
        OmegaConf.to_container(cfg.postprocess, resolve=True)
    )
    base, names = audio_files(cfg.input)
    sample_rate = trained.logmel.params["sample_rate"]
    probs: dict[str, np.ndarray] = {}
    with tqdm(total=len(names), desc="predict", unit="file") as bar:
        # A group of files at a time bounds the features held in memory.
        for start in range(0, len(names), FILES_PER_GROUP):
            group = names[start : start + FILES_PER_GROUP]
            features = []
            for name in group:
                features.append(trained.features(load_audio(base / name, sample_rate)))
                bar.update()
            probs.update(trained.predict(features, group))
    events = probs_to_events(probs, trained.hop_seconds, trained.classes, pp)
    output = Path(cfg.output)
    write_tsv(events, output, filenames=names)
    log.info("%d events in %d files -> %s", len(events), len(names), output)
    if cfg.save_probabilities:
        prob_dir = output.with_name(output.stem + "_probabilities")
        for name, p in probs.items():
            atomic_write(prob_dir / (name + ".npy"), partial(np.save, arr=p, allow_pickle=False))
        write_text("\n".join(trained.classes) + "\n", prob_dir / "classes.txt")
        log.info("frame probabilities [T, C] (hop %.4f s) -> %s", trained.hop_seconds, prob_dir)
    return events


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    predict(cfg)


if __name__ == "__main__":
    main()
