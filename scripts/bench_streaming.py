"""Time streaming prediction of one long recording, and PSDS on long files.

    python scripts/bench_streaming.py predict [--minutes 60] [--chunk-seconds 60] [--threads 2]
    python scripts/bench_streaming.py psds [--minutes 10] [--classes 8] [--reference]

predict: writes a noise-and-tones recording of `--minutes` at 44.1 kHz (resampled to 16 kHz when
read, as a field recording would be) and predicts it with the default job's model and features
(configs/model/crnn.yaml, configs/features/logmel.yaml; random weights: the work does not depend
on them), once streamed (`TrainedModel.stream`, `--chunk-seconds`) and, with `--one-pass`, as one
pass (load_audio, features, `TrainedModel.predict`). Each mode runs in a fresh process so that
its peak resident memory (ru_maxrss) is its own; the table gives seconds, audio seconds per
second, peak memory and the memory after imports and model building.

psds: `sed.evaluation.psds_from_scores` (PSDS1, PSDS2, collar F1) on one file of `--minutes`
with smooth model-like scores (and random scores, the worst case: every frame a change point);
`--reference` also times sed_scores_eval computing the same from score DataFrames itself
(minutes for a few minutes of audio: keep `--minutes` small).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE, FILE_RATE, HOP = 16000, 44100, 320


def rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_recording(path: Path, minutes: float) -> Path:
    """Noise, beeps and a hum at FILE_RATE, written a minute at a time (never whole in memory)."""
    import soundfile as sf

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", FILE_RATE, 1, subtype="PCM_16") as f:
        for m in range(int(np.ceil(minutes))):
            n = int(FILE_RATE * min(60.0, minutes * 60 - m * 60))
            t = (np.arange(n) + m * 60 * FILE_RATE) / FILE_RATE
            beeps = (np.sin(2 * np.pi * 0.1 * t) > 0.5) * np.sin(2 * np.pi * 1000 * t)
            audio = 0.2 * beeps + 0.1 * np.sin(2 * np.pi * 150 * t) + 0.02 * rng.standard_normal(n)
            f.write(audio.astype(np.float32))
    return path


def default_model():
    """A TrainedModel with the default job's model and features (random weights)."""
    import torch
    from omegaconf import OmegaConf

    from sed.data.synthetic import CLASSES
    from sed.features import LogMel, Normalizer
    from sed.inference import TrainedModel
    from sed.models import CRNN
    from sed.postprocess import PostProcessing

    root = Path(__file__).resolve().parents[1] / "configs"
    features = OmegaConf.to_container(OmegaConf.load(root / "features" / "logmel.yaml"))
    model = OmegaConf.load(root / "model" / "crnn.yaml")
    torch.manual_seed(0)
    crnn = CRNN(n_mels=features["n_mels"], num_classes=len(CLASSES), channels=model.channels,
                pool_sizes=list(model.pool_sizes), hidden=model.hidden)  # fmt: skip
    return TrainedModel(
        model=crnn.eval(),
        logmel=LogMel(**features).eval(),
        normalizer=Normalizer(mean=np.full(40, -40.0), std=np.full(40, 20.0)),
        classes=list(CLASSES),
        postprocessing=PostProcessing(),
        config_yaml="",
        epoch=0,
    )


def run_predict(path: Path, mode: str, chunk_seconds: float, threads: int) -> dict:
    """One mode in this process: seconds, throughput and memory."""
    import torch

    from sed.audio import load_audio, open_audio

    torch.set_num_threads(threads)
    trained = default_model()
    base = rss_mib()
    began = time.perf_counter()
    if mode == "stream":
        with open_audio(path, SAMPLE_RATE) as reader:
            probs = trained.stream(reader, round(chunk_seconds * SAMPLE_RATE / HOP))
    else:
        waveform = load_audio(path, SAMPLE_RATE)
        probs = trained.predict([trained.features(waveform)], ["f"])["f"]
    seconds = time.perf_counter() - began
    audio = len(probs) * HOP / SAMPLE_RATE
    return {"mode": mode, "threads": threads, "audio_s": audio, "seconds": seconds,
            "audio_s_per_s": audio / seconds, "peak_mib": rss_mib(), "base_mib": base,
            "frames": len(probs)}  # fmt: skip


def predict_table(args) -> None:
    path = write_recording(Path(args.dir) / f"recording_{args.minutes:g}min.wav", args.minutes)
    rows = []
    for mode in ["stream"] + (["one-pass"] if args.one_pass else []):
        cmd = [sys.executable, __file__, "_child", str(path), mode, str(args.chunk_seconds),
               str(args.threads)]  # fmt: skip
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout.splitlines()[-1]))  # fmt: skip
    print(f"{args.minutes:g} min at {FILE_RATE} Hz -> {SAMPLE_RATE} Hz, chunk {args.chunk_seconds:g} s,"
          f" {args.threads} thread(s)\n")  # fmt: skip
    print("| mode | seconds | audio s / s | peak memory (MiB) | after imports + model (MiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['seconds']:.1f} | {r['audio_s_per_s']:.0f} | "
              f"{r['peak_mib']:.0f} | {r['base_mib']:.0f} |")  # fmt: skip


def psds_table(args) -> None:
    import pandas as pd
    from scipy.ndimage import gaussian_filter1d

    from sed.evaluation import COLLAR_PARAMS, PSDS1, PSDS2, psds_from_scores, score_dataframes

    hop = HOP / SAMPLE_RATE
    frames = int(args.minutes * 60 / hop)
    rng = np.random.default_rng(0)
    classes = [f"class_{i}" for i in range(args.classes)]
    rows = []
    for c in classes:  # events of 0.3-5 s, 2-20 s apart
        t = rng.uniform(0, 5)
        while (d := rng.uniform(0.3, 5)) and t + d < frames * hop:
            rows.append(("rec.wav", round(t, 3), round(t + d, 3), c))
            t += d + rng.uniform(2, 20)
    ref = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
    smooth = gaussian_filter1d(rng.normal(size=(frames, args.classes)) * 6, 5, axis=0)
    cases = {"smooth": 1 / (1 + np.exp(-smooth)), "random": rng.random((frames, args.classes))}
    print(
        f"one file of {args.minutes:g} min ({frames} frames), {args.classes} classes, "
        f"{len(ref)} reference events\n"
    )
    print("| scores | psds_from_scores (s) | sed_scores_eval itself (s) |")
    print("|---|---|---|")
    for name, p in cases.items():
        probs = {"rec.wav": p.astype(np.float32)}
        began = time.perf_counter()
        ours = psds_from_scores(probs, hop, ref, None, classes)
        ours_s = time.perf_counter() - began
        theirs_s = "not run"
        if args.reference:
            from sed_scores_eval import collar_based, intersection_based

            from sed.evaluation import ground_truth_dict

            began = time.perf_counter()
            scores = score_dataframes(probs, hop, classes)
            gt = ground_truth_dict(ref, classes, ["rec.wav"])
            durations = {"rec.wav": frames * hop}
            for settings in (PSDS1, PSDS2):
                intersection_based.psds(scores=scores, ground_truth=gt, audio_durations=durations,
                                        unit_of_time="hour", **settings)  # fmt: skip
            collar_based.fscore(scores=scores, ground_truth=gt, threshold=0.5, **COLLAR_PARAMS)
            collar_based.best_fscore(scores=scores, ground_truth=gt, **COLLAR_PARAMS)
            theirs_s = f"{time.perf_counter() - began:.1f}"
        print(
            f"| {name} | {ours_s:.2f} | {theirs_s} |  (psds1 {ours['psds1']:.4f}, "
            f"psds2 {ours['psds2']:.4f}, collar_f1 {ours['collar_f1']:.4f})"
        )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        path, mode, chunk, threads = argv[1:]
        print(json.dumps(run_predict(Path(path), mode, float(chunk), int(threads))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--chunk-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one-pass", action="store_true", help="also time the whole-file pass")
    p.add_argument("--dir", default="/tmp", help="where the recording is written (reused)")
    q = sub.add_parser("psds")
    q.add_argument("--minutes", type=float, default=10.0)
    q.add_argument("--classes", type=int, default=8)
    q.add_argument("--reference", action="store_true", help="also time sed_scores_eval itself")
    args = parser.parse_args(argv)
    predict_table(args) if args.what == "predict" else psds_table(args)


if __name__ == "__main__":
    main()
