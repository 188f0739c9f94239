"""GPU engines benchmark: first-audio time and aggregate real-time factor at 1, 4 and 8 concurrent streams.

    .venv/bin/python -m bench.gpu [--engines fish,qwen3] [--streams 1,4,8] [--sentences 3]
                                  [--fish-checkpoint DIR] [--qwen-checkpoint DIR] [--smoke]

Each stream is what one worker process does (`make worker --concurrency N` loads the model once per
process): its own loaded engine, speaking a few sentences one after another, as the job runner does. All
streams of a step start together (a barrier), so the GPU is shared as it is in production.

Weights: give a checkpoint folder you downloaded (`--fish-checkpoint`, `--qwen-checkpoint`) for the figures
that matter. Without one, random weights are built in a temporary folder with the builders the tests use
(`tests/fish_tiny.py`, `tests/qwen_tiny.py`): tiny by default, which measures the pipeline's overhead, not
the model's compute. Random weights never say "stop", so every sentence runs to the engine's token limit
(`--max-new-tokens`): set it to what a real sentence takes (a 10 s sentence: ~215 Fish tokens, 125 Qwen frames).

Prints, per engine and step: first-audio time (median and worst over streams), audio produced, wall time,
aggregate RTF (wall seconds per audio second across all streams; < 1 is faster than real time). Runs only
where CUDA is present, except `--smoke` (tiny weights, CPU, 1 and 2 streams, one sentence), which proves the
bench still runs (tests/test_benches.py). Asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: The package each engine's inference code comes from.
PACKAGES = {"fish": "fish_speech", "qwen3": "qwen_tts"}
SENTENCE = ("LockN speaks this sentence on a graphics card, and the benchmark measures how soon the first "
            "audio arrives and how much audio every stream makes per second.")


@dataclass(frozen=True)
class StreamResult:
    first_audio_s: float
    audio_s: float


def build_engine(name: str, checkpoint: Path, device: str, max_new_tokens: int):  # type: ignore[no-untyped-def]
    """The engine a worker would build for `name`, from `checkpoint`."""
    if name == "fish":
        from workers.engines.fish_speech import FishSpeechEngine

        return FishSpeechEngine(checkpoint, device, max_new_tokens)
    from workers.engines.qwen3 import Qwen3Engine

    return Qwen3Engine(checkpoint, None, device, max_new_tokens)


def first_voice(engine) -> str:  # type: ignore[no-untyped-def]
    return engine.voices()[0].id


def run_stream(name: str, checkpoint: str, device: str, max_new_tokens: int, sentences: int,
               barrier, results) -> None:  # type: ignore[no-untyped-def]
    """One worker process: load, wait for the others, speak `sentences` sentences; report first audio and audio."""
    engine = build_engine(name, Path(checkpoint), device, max_new_tokens)
    engine.load()
    voice, rate = first_voice(engine), engine.describe().sample_rate
    barrier.wait()
    started, first, samples = time.perf_counter(), None, 0
    for _ in range(sentences):
        for chunk in engine.synthesize(SENTENCE, voice):
            first = first if first is not None else time.perf_counter() - started
            samples += len(chunk)
    results.put(StreamResult(first or 0.0, samples / rate))


def measure(name: str, checkpoint: Path, device: str, streams: int, max_new_tokens: int,
            sentences: int) -> tuple[list[StreamResult], float]:
    """`streams` processes speaking at once: each one's result, and the wall time from the barrier to the last."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be shared by forked processes
    barrier, results = context.Barrier(streams + 1), context.Queue()
    processes = [context.Process(target=run_stream, args=(name, str(checkpoint), device, max_new_tokens,
                                                          sentences, barrier, results)) for _ in range(streams)]
    for process in processes:
        process.start()
    barrier.wait(timeout=900)  # every stream loaded its model
    started = time.perf_counter()
    collected = [results.get(timeout=1800) for _ in processes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    return collected, wall


def random_checkpoint(name: str, folder: Path) -> Path:
    """Random weights of the engine's architecture, built by the tests' builder."""
    if name == "fish":
        from tests.fish_tiny import make_tiny_checkpoint

        make_tiny_checkpoint(folder)
        return folder
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    return make_tiny_qwen_checkpoint(folder, "custom_voice")


def report(name: str, streams: int, results: list[StreamResult], wall: float) -> None:
    firsts = [r.first_audio_s for r in results]
    audio = sum(r.audio_s for r in results)
    print(f"{name:<6} {streams:>2} stream(s)  first audio p50 {statistics.median(firsts) * 1000:8.1f} ms  "
          f"worst {max(firsts) * 1000:8.1f} ms   audio {audio:7.2f} s in {wall:6.2f} s   "
          f"aggregate RTF {wall / audio if audio else float('nan'):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="fish,qwen3")
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--sentences", type=int, default=3, help="sentences each stream speaks")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--fish-checkpoint", type=Path)
    parser.add_argument("--qwen-checkpoint", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny weights on the CPU, 1 and 2 streams: proves the bench still runs (tests/test_benches.py)")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        args.streams, args.sentences, args.max_new_tokens, device = "1,2", 1, 8, "cpu"
    elif device != "cuda":
        print("bench.gpu measures GPU engines and this machine has no CUDA device; --smoke runs it on the CPU.")
        sys.exit(0)
    given = {"fish": args.fish_checkpoint, "qwen3": args.qwen_checkpoint}
    print(f"LockN GPU engines benchmark — device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
          + f", {args.sentences} sentence(s) of {len(SENTENCE)} characters per stream, "
            f"max {args.max_new_tokens} tokens per sentence")
    measured = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.engines.split(","):
            if importlib.util.find_spec(PACKAGES[name]) is None:
                print(f"{name}: not installed here (make setup-{'fish' if name == 'fish' else 'qwen'}); skipped")
                continue
            checkpoint = given.get(name) or random_checkpoint(name, Path(scratch) / name)
            print(f"{name}: {'weights from ' + str(checkpoint) if given.get(name) else 'random weights (tiny)'}")
            for streams in (int(n) for n in args.streams.split(",")):
                results, wall = measure(name, checkpoint, device, streams, args.max_new_tokens, args.sentences)
                report(name, streams, results, wall)
            measured += 1
    print(f"GPU engines measured: {measured}")


if __name__ == "__main__":
    main()
