"""Memory and speed of streaming prediction on long recordings, and PSDS on long files.

    python scripts/bench_streaming.py growth [--minutes 20 120] [--threads 1] [--repeats 1]
    python scripts/bench_streaming.py predict [--minutes 60] [--chunk-seconds 60] [--threads 2]
    python scripts/bench_streaming.py psds [--minutes 10] [--classes 8] [--reference]

growth (the headline, issue 22): `python -m sed.predict` of the default job's model (a checkpoint
of it with random weights, written to `--dir`) on noise-and-tones recordings of each `--minutes`,
each run in a fresh process whose peak resident memory is read from os.wait4 (ru_maxrss, the
whole process: imports, model, streaming, post-processing, the event table). Prints peak RSS per
length, the growth from the shortest to the longest (goal: at most 64 MB from 20 to 120 min) and
the real-time factor (audio seconds per second: of the streaming alone, as sed.predict logs it,
and of the whole process; goal: at least 100x). With `--repeats N` each length runs N times and
its largest peak and its fastest run count. `--save-probabilities` also writes the [T, C]
probabilities. Peak RSS varies by some 30-60 MB from run to run (the allocator's layout of the
chunks' buffers): compare lengths with `--repeats 2` or more.

predict: writes a noise-and-tones recording of `--minutes` at 44.1 kHz (resampled to 16 kHz when
read, as a field recording would be) and predicts it with the default job's model and features
(configs/model/crnn.yaml, configs/features/logmel.yaml; random weights: the work does not depend
on them), once streamed (`TrainedModel.stream`, `--chunk-seconds`) and, with `--one-pass`, as one
pass (load_audio, features, `TrainedModel.predict`). Each mode runs in a fresh process so that
its peak resident memory (ru_maxrss) is its own; the table gives seconds, audio seconds per
second, peak memory and the memory after imports and model building.

psds: `sed.psds.psds_from_scores` (PSDS1, PSDS2, collar F1) on one file of `--minutes`
with smooth model-like scores (and random scores, the worst case: every frame a change point);
`--reference` also times sed_scores_eval computing the same from score DataFrames itself
(minutes for a few minutes of audio: keep `--minutes` small).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE, FILE_RATE, HOP = 16000, 44100, 320
REPO = Path(__file__).resolve().parents[1]
GROWTH_GOAL_MB, SPEED_GOAL = 64, 100


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


def write_checkpoint(path: Path) -> Path:
    """default_model() as the checkpoint sed.predict loads (the fields sed.train saves)."""
    from omegaconf import OmegaConf

    from sed.checkpoints import model_spec, save_checkpoint

    if path.exists():
        return path
    trained = default_model()
    kwargs = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "model" / "crnn.yaml"))
    target = kwargs.pop("_target_")
    kwargs.update(n_mels=trained.logmel.params["n_mels"], num_classes=len(trained.classes))
    state = {
        "model_spec": model_spec(target, kwargs),
        "model": trained.model.state_dict(),
        "features": trained.logmel.params,
        "classes": trained.classes,
        "normalizer": trained.normalizer.state_dict(),
        "postprocess": trained.postprocessing.to_dict(),
        "config_yaml": "",
    }
    save_checkpoint(state, path)
    return path


def run_sed_predict(checkpoint: Path, recording: Path, out: Path, args) -> dict:
    """`python -m sed.predict` in a fresh process: its peak RSS (os.wait4), wall time and the
    streaming time it logs."""
    cmd = [sys.executable, "-m", "sed.predict", f"checkpoint={checkpoint}", f"input={recording}",
           f"output={out / 'events.tsv'}", "device=cpu", f"chunk_seconds={args.chunk_seconds}",
           f"save_probabilities={str(args.save_probabilities).lower()}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    out.mkdir(parents=True, exist_ok=True)
    log = out / "predict.log"
    began = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=out)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if child.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({child.returncode}):\n{text[-2000:]}")
    streamed = re.search(r"streamed in ([\d.]+) s", text)
    events = re.search(r"(\d+) events in", text)
    import soundfile as sf

    audio = sf.info(str(recording)).duration
    return {"minutes": audio / 60, "peak_mb": usage.ru_maxrss / 1024, "seconds": seconds,
            "stream_seconds": float(streamed[1]) if streamed else float("nan"),
            "realtime_process": audio / seconds,
            "realtime_stream": audio / float(streamed[1]) if streamed else float("nan"),
            "events": int(events[1]) if events else 0}  # fmt: skip


def growth_table(args) -> dict:
    """The headline: peak RSS of sed.predict per recording length, and its growth."""
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = write_checkpoint(folder / "bench_streaming_default_model.pt")
    rows, load = [], [os.getloadavg()[0]]
    for minutes in args.minutes:
        recording = write_recording(folder / f"recording_{minutes:g}min.wav", minutes)
        runs = [run_sed_predict(checkpoint, recording, folder / f"predict_{minutes:g}min", args)
                for _ in range(args.repeats)]  # fmt: skip
        # the largest peak (memory) and the fastest run (speed: the others waited for the CPU)
        row = dict(max(runs, key=lambda r: r["peak_mb"]))
        fastest = min(runs, key=lambda r: r["stream_seconds"])
        row.update({k: fastest[k] for k in ("seconds", "stream_seconds", "realtime_process",
                                             "realtime_stream")})  # fmt: skip
        row["peaks_mb"] = [r["peak_mb"] for r in runs]
        rows.append(row)
    load.append(os.getloadavg()[0])
    growth = rows[-1]["peak_mb"] - rows[0]["peak_mb"]
    slowest = min(r["realtime_stream"] for r in rows)
    result = {"rows": rows, "growth_mb": growth, "threads": args.threads,
              "chunk_seconds": args.chunk_seconds, "save_probabilities": args.save_probabilities,
              "load_average": load,
              "growth_ok": growth <= GROWTH_GOAL_MB, "speed_ok": slowest >= SPEED_GOAL}  # fmt: skip
    first, last = rows[0], rows[-1]
    print(f"sed.predict, default model, {FILE_RATE} Hz recordings read at {SAMPLE_RATE} Hz, chunk "
          f"{args.chunk_seconds:g} s, {args.threads} thread(s), save_probabilities="
          f"{str(args.save_probabilities).lower()}, {args.repeats} run(s) per length (the largest "
          f"peak, the fastest run); load average {load[0]:.1f} -> {load[1]:.1f}\n")  # fmt: skip
    print(f"**peak RSS {first['peak_mb']:.0f} MB at {first['minutes']:g} min -> "
          f"{last['peak_mb']:.0f} MB at {last['minutes']:g} min: growth {growth:+.0f} MB** "
          f"(goal <= {GROWTH_GOAL_MB} MB: {'met' if result['growth_ok'] else 'NOT met'}); "
          f"streaming >= {slowest:.0f}x real time (goal >= {SPEED_GOAL}x: "
          f"{'met' if result['speed_ok'] else 'NOT met'})\n")  # fmt: skip
    print("| recording | peak RSS (MB) | runs' peaks | process s | x real time (process) | "
          "streaming s | x real time (streaming) | events |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minutes']:g} min | {r['peak_mb']:.0f} | "
              f"{', '.join(f'{p:.0f}' for p in r['peaks_mb'])} | {r['seconds']:.1f} | "
              f"{r['realtime_process']:.0f} | {r['stream_seconds']:.1f} | "
              f"{r['realtime_stream']:.0f} | {r['events']} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


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

    from sed.psds import COLLAR_PARAMS, PSDS1, PSDS2, psds_from_scores, score_dataframes

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

            from sed.psds import ground_truth_dict

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
    g = sub.add_parser("growth", help="peak RSS of sed.predict at two lengths (the headline)")
    g.add_argument("--minutes", type=float, nargs="+", default=[20.0, 120.0])
    g.add_argument("--chunk-seconds", type=float, default=60.0)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--repeats", type=int, default=1)
    g.add_argument("--save-probabilities", action="store_true")
    g.add_argument("--dir", default="/tmp/bench_streaming", help="recordings, checkpoint, outputs")
    g.add_argument("--json", help="also write the results to this JSON file")
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
    {"growth": growth_table, "predict": predict_table, "psds": psds_table}[args.what](args)


if __name__ == "__main__":
    main()
