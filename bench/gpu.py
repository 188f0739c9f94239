"""GPU engines benchmark: first audio, per-stream and aggregate real-time factor, streams held in real time.

    .venv/bin/python -m bench.gpu [--full-size] [--engines fish,qwen3] [--streams 1,4,8,16,32] [--sentences 2]
                                  [--qwen-size 1.7b|0.6b] [--fish-checkpoint DIR] [--qwen-checkpoint DIR]
                                  [--step auto|graphs|compiled|eager[,…]] [--budget-s 420] [--json FILE] [--smoke]
                                  [--weights DIR]

Streams run as a GPU worker runs jobs (`LOCKN_GPU_MAX_STREAMS`): threads of one process sharing one loaded
engine, each speaking `--sentences` sentences one after another as the job runner does, all starting together.
Both engines batch (`workers/engines/stream_batcher.py`): the streams are decoded together, a frame at a time.
`--step` names how the frame step runs (`LOCKN_GPU_STEP`: CUDA graphs, compiled, eager); several modes are measured
one after another on the same weights, each loaded and warmed up as a worker would (the warm-up's time printed).

Weights: `--fish-checkpoint` / `--qwen-checkpoint` for downloaded ones. `--full-size`: random weights at the
released models' sizes (`bench/full_size.py`: S1-mini, Qwen3-TTS 12 Hz 1.7B or 0.6B), built on the GPU in
seconds with the tests' builders, so anyone with a GPU measures real compute with no download. Otherwise tiny
random weights (the pipeline's overhead only). Random weights rarely say "stop", so each sentence runs to a fixed
length: `--max-new-tokens`, by default what a ~10 s sentence takes (Fish 215 tokens, Qwen3 125 frames).
Built weights go to a temporary folder, or to `--weights DIR` (DIR/fish, DIR/qwen3-1.7b), kept for what runs next.

Prints per engine and step mode: one frame step's milliseconds alone at each bucket of streams (`bench.frame_steps`),
then per stream count: first audio (p50, worst), audio made, wall time, aggregate RTF (wall seconds per
second of audio, all streams together), the slowest stream's RTF, how many streams ran faster than real time,
and peak GPU memory. Self-limiting: a step that would not fit in what is left of `--budget-s` is not started, and
a step past its share is cut (streams stop between pieces); the figures say so. Each engine is measured in a
process of its own (this module again, `--one-process`): on a GPU a device-side assert ends its process's CUDA
context, and one engine's failure must not cost the other's figures. `--smoke`: tiny weights on the CPU, 1 and 2
streams, one short sentence (tests/test_benches.py runs it). Asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.frame_steps import FrameStepTiming, print_timings, time_frame_steps

#: The package each engine's inference code comes from.
PACKAGES = {"fish": "fish_speech", "qwen3": "qwen_tts"}
SENTENCE = ("LockN speaks this sentence on a graphics card, and the benchmark measures how soon the first "
            "audio arrives and how much audio every stream makes per second.")
#: Tokens a ~10 s sentence takes (Fish's codec: 21.5 per second; Qwen's: 12.5 frames per second, plus one).
SENTENCE_TOKENS = {"fish": 215, "qwen3": 126}
#: How long an engine's process may run past its share of the budget (a step under way, the model's load).
ENGINE_GRACE_S = 60.0


@dataclass(frozen=True)
class StreamResult:
    first_audio_s: float
    audio_s: float
    wall_s: float
    cut: bool = False  # stopped at the step's deadline

    @property
    def rtf(self) -> float:
        return self.wall_s / self.audio_s if self.audio_s else float("inf")


@dataclass(frozen=True)
class StepReport:
    engine: str
    step: str  # how the frame step ran: graphs, compiled or eager (LOCKN_GPU_STEP)
    streams: int
    first_audio_p50_ms: float
    first_audio_worst_ms: float
    audio_s: float
    wall_s: float
    aggregate_rtf: float
    slowest_stream_rtf: float
    streams_in_real_time: int
    peak_gpu_mib: float
    cut: bool
    warm_up_s: float = 0.0  # loading and warming the engine (graphs recorded or compiled) before any stream
    fallback: str = ""  # why the frame step went eager, if it did (then the figures are the eager step's)


def frame_step_failures(engine: Any) -> str:
    """Why any of `engine`'s models runs its frame step eagerly after all (`FastStep.failure`), or ""."""
    batchers = [*getattr(engine, "batchers", {}).values(), getattr(engine, "batcher", None)]
    failures = {batcher.decoder.frame_step.failure for batcher in batchers if batcher is not None}
    return "; ".join(sorted(failure for failure in failures if failure))


def build_engine(name: str, checkpoint: Path, device: str, max_new_tokens: int, max_streams: int,
                 step: str = "auto"):  # type: ignore[no-untyped-def]
    """The engine a GPU worker would build for `name`, from `checkpoint`, its frame step run as `step`."""
    if name == "fish":
        from workers.engines.fish_speech import FishSpeechEngine

        return FishSpeechEngine(checkpoint, device, max_new_tokens, step=step, max_streams=max_streams)
    from workers.engines.qwen3 import Qwen3Engine

    return Qwen3Engine(checkpoint, None, device, max_new_tokens, max_streams=max_streams, step=step)


def speak(engine: Any, sentences: int, deadline: float, start: threading.Barrier) -> StreamResult:
    """One stream: `sentences` sentences, one after another, until done or `deadline` (monotonic)."""
    voice, rate = engine.voices()[0].id, engine.describe().sample_rate
    start.wait()
    started, first, samples, cut = time.perf_counter(), None, 0, False
    for _ in range(sentences):
        pieces = engine.synthesize(SENTENCE, voice)
        for piece in pieces:
            first = first if first is not None else time.perf_counter() - started
            samples += len(piece)
            if time.monotonic() > deadline:
                pieces.close()
                cut = True
                break
        if cut:
            break
    return StreamResult(first or 0.0, samples / rate, time.perf_counter() - started, cut)


def measure(engine: Any, streams: int, sentences: int, deadline: float) -> tuple[list[StreamResult], float]:
    """`streams` threads speaking at once through `engine`: each one's result, and the wall time of all."""
    start = threading.Barrier(streams + 1)
    results: list[StreamResult] = []
    lock = threading.Lock()

    def run() -> None:
        result = speak(engine, sentences, deadline, start)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(streams)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic() + 60))
    return results, time.perf_counter() - began


def summarise(name: str, mode: str, streams: int, results: list[StreamResult], wall: float,
              peak_mib: float) -> StepReport:
    firsts = [r.first_audio_s for r in results] or [float("nan")]
    audio = sum(r.audio_s for r in results)
    return StepReport(name, mode, streams, round(statistics.median(firsts) * 1000, 1), round(max(firsts) * 1000, 1),
                      round(audio, 2), round(wall, 2), round(wall / audio, 3) if audio else float("inf"),
                      round(max(r.rtf for r in results), 3) if results else float("inf"),
                      sum(r.rtf < 1 for r in results), round(peak_mib, 1),
                      any(r.cut for r in results) or len(results) < streams)


def print_step(step: StepReport) -> None:
    print(f"{step.engine:<6} {step.step:<8} {step.streams:>2} stream(s)  first audio p50 {step.first_audio_p50_ms:8.1f} ms  "
          f"worst {step.first_audio_worst_ms:8.1f} ms   audio {step.audio_s:7.2f} s in {step.wall_s:6.2f} s   "
          f"aggregate RTF {step.aggregate_rtf:.3f}   slowest stream RTF {step.slowest_stream_rtf:.3f}   "
          f"real-time streams {step.streams_in_real_time}/{step.streams}   GPU {step.peak_gpu_mib:,.0f} MiB"
          + ("   (cut at its deadline)" if step.cut else "")
          + (f"   (the frame step fell back to eager: {step.fallback})" if step.fallback else ""), flush=True)


def weights_folder(name: str, args: argparse.Namespace) -> str:
    """Where an engine's built weights go within the scratch folder: `fish`, `qwen3-1.7b` (`qwen3-tiny` unless
    `--full-size`): `bench/peer_lease.sh` finds the Qwen checkpoint there when `--weights` keeps it, and measures
    the peer package on it."""
    return name if name == "fish" else f"{name}-{args.qwen_size if args.full_size else 'tiny'}"


def checkpoint_for(name: str, args: argparse.Namespace, folder: Path, device: str) -> tuple[Path, str]:
    """The weights to measure, and how to describe them."""
    given = {"fish": args.fish_checkpoint, "qwen3": args.qwen_checkpoint}[name]
    if given:
        return given, f"weights from {given}"
    if args.full_size:
        from bench import full_size

        started = time.perf_counter()
        built = full_size.build_fish(folder, device) if name == "fish" else \
            full_size.build_qwen(folder, args.qwen_size, device)
        size = "S1-mini" if name == "fish" else f"12 Hz {args.qwen_size}"
        return built, f"random weights at full size ({size}), built on {device} in {time.perf_counter() - started:.1f} s"
    if name == "fish":
        from tests.fish_tiny import make_tiny_checkpoint

        make_tiny_checkpoint(folder)
        return folder, "random weights (tiny)"
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    return make_tiny_qwen_checkpoint(folder, "custom_voice"), "random weights (tiny)"


def peak_memory_mib(device: str, reset: bool = False) -> float:
    if not device.startswith("cuda"):
        return 0.0
    import torch

    peak = torch.cuda.max_memory_allocated() / 2 ** 20
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak


def run_engine(name: str, args: argparse.Namespace, device: str, scratch: Path, ends_at: float,
               record: Callable[[StepReport | FrameStepTiming], None]) -> list[StepReport]:
    """Build or find the weights once, then measure the engine with each frame-step mode of `--step` in turn,
    sharing what is left of the engine's budget; `record` gets each step as soon as it is measured (a lease cut
    short keeps what was measured)."""
    checkpoint, described = checkpoint_for(name, args, scratch / weights_folder(name, args), device)
    print(f"{name}: {described}", flush=True)
    modes = args.step.split(",")
    steps: list[StepReport] = []
    for index, mode in enumerate(modes):
        share = (ends_at - time.monotonic()) / (len(modes) - index)
        steps += run_mode(name, mode, checkpoint, args, device, time.monotonic() + share, record)
    return steps


def run_mode(name: str, mode: str, checkpoint: Path, args: argparse.Namespace, device: str, ends_at: float,
             record: Callable[[StepReport | FrameStepTiming], None]) -> list[StepReport]:
    """Load the engine with its frame step run as `mode`, warm it up (graphs recorded or compiled there), time
    its frame step alone (`bench.frame_steps`), then measure each stream count that fits before `ends_at`."""
    from workers.engines.fast_step import resolve_mode

    mode = resolve_mode(mode, device)  # type: ignore[arg-type]
    counts = [int(n) for n in args.streams.split(",")]
    tokens = args.max_new_tokens or (8 if args.smoke else SENTENCE_TOKENS[name])
    engine = build_engine(name, checkpoint, device, tokens, max(counts), mode)
    started = time.perf_counter()
    engine.load()
    engine.warm_up()  # as a worker does before it says ready: kernels chosen, graphs recorded or compiled
    warm_up_s = round(time.perf_counter() - started, 1)
    print(f"{name} [{mode}]: loaded and warmed up in {warm_up_s:.1f} s; {tokens} tokens per sentence", flush=True)
    timings = time_frame_steps(engine, name, mode, max(counts))  # before any stream: dummy rows
    print_timings(timings)
    for timing in timings:
        record(timing)
    return measure_counts(engine, name, mode, counts, args.sentences, device, ends_at, warm_up_s, record)


def measure_counts(engine: Any, name: str, mode: str, counts: list[int], sentences: int, device: str,
                   ends_at: float, warm_up_s: float, record: Callable[[Any], None]) -> list[StepReport]:
    """Measure a loaded, warmed-up `engine` at each stream count of `counts` that fits before `ends_at`
    (monotonic): a count is not started when the last one's wall time, half again, no longer fits, and each
    one's streams stop at their share of what is left. Shared with `bench.peer_qwen`, so a peer package is
    measured by the same rules as LockN's engines; `engine` needs only `voices`, `describe` and `synthesize`."""
    steps: list[StepReport] = []
    for index, streams in enumerate(counts):
        left = ends_at - time.monotonic()
        share = left / (len(counts) - index)  # what is left, shared by the steps still to come
        if steps and steps[-1].wall_s * 1.5 > left or left <= 0:
            print(f"{name} [{mode}]: {streams} streams skipped: {left:.0f} s of the budget left", flush=True)
            break
        peak_memory_mib(device, reset=True)
        results, wall = measure(engine, streams, sentences, time.monotonic() + max(share, left / 2))
        steps.append(replace(summarise(name, mode, streams, results, wall, peak_memory_mib(device)),
                             warm_up_s=warm_up_s, fallback=frame_step_failures(engine)))
        print_step(steps[-1])
        record(steps[-1])
    held = [step.streams for step in steps if step.streams_in_real_time == step.streams and not step.cut]
    print(f"{name} [{mode}]: streams held in real time on this device: {max(held) if held else 0} "
          "(of the steps measured)", flush=True)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="fish,qwen3")
    parser.add_argument("--streams", default="1,4,8,16,32")
    parser.add_argument("--sentences", type=int, default=2, help="sentences each stream speaks")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="tokens per sentence (default: a ~10 s one)")
    parser.add_argument("--full-size", action="store_true", help="random weights at the released models' sizes")
    parser.add_argument("--qwen-size", choices=("1.7b", "0.6b"), default="1.7b")
    parser.add_argument("--step", default="auto",
                        help="frame-step modes to measure in turn, comma-separated: auto, graphs, compiled, eager "
                             "(LOCKN_GPU_STEP; auto = graphs on CUDA)")
    parser.add_argument("--fish-checkpoint", type=Path)
    parser.add_argument("--qwen-checkpoint", type=Path)
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting steps after this many seconds")
    parser.add_argument("--json", type=Path, help="also write every step's figures here")
    parser.add_argument("--weights", type=Path,
                        help="keep the weights built here (DIR/fish, DIR/qwen3-1.7b); default: a temporary folder")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny weights on the CPU, 1 and 2 streams: proves the bench still runs (tests/test_benches.py)")
    parser.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)  # see `measure_each_alone`
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:  # `make setup` alone: the engines' layer is not installed
        print("bench.gpu needs the GPU engines' layer (make setup-gpu, or make setup-qwen on a CPU); "
              "GPU engines measured: 0")
        return
    import torch

    began = time.monotonic()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        args.streams, args.sentences, args.full_size, device = "1,2", 1, False, "cpu"
    elif device != "cuda":
        print("bench.gpu measures GPU engines and this machine has no CUDA device; --smoke runs it on the CPU.")
        sys.exit(0)
    engines = [name for name in args.engines.split(",") if importlib.util.find_spec(PACKAGES[name]) is not None]
    for name in set(args.engines.split(",")) - set(engines):
        print(f"{name}: not installed here (make setup-{'fish' if name == 'fish' else 'qwen'}); skipped")
    if len(engines) > 1 and not args.one_process:  # before this process makes a CUDA context of its own
        print(f"LockN GPU engines benchmark: {', '.join(engines)}, each in a process of its own", flush=True)
        measured = measure_each_alone(engines, args, began)
        print(f"GPU engines measured: {measured} in {time.monotonic() - began:.0f} s")
        return
    described = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"LockN GPU engines benchmark — device {device}" + (f" ({described})" if device == "cuda" else "")
          + f", {args.sentences} sentence(s) of {len(SENTENCE)} characters per stream, budget {args.budget_s:.0f} s",
          flush=True)
    steps: list[StepReport] = []
    frame_steps: list[FrameStepTiming] = []

    def record(item: StepReport | FrameStepTiming) -> None:
        (frame_steps if isinstance(item, FrameStepTiming) else steps).append(item)  # type: ignore[arg-type]
        if args.json:
            args.json.write_text(json.dumps({"device": described, "torch": torch.__version__,
                                             "steps": [asdict(s) for s in steps],
                                             "frame_steps": [asdict(t) for t in frame_steps]}, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as scratch:
        for index, name in enumerate(engines):
            share = (began + args.budget_s - time.monotonic()) / (len(engines) - index)
            try:
                run_engine(name, args, device, args.weights or Path(scratch), time.monotonic() + share, record)
            except Exception as exc:  # noqa: BLE001 - one engine failing must not cost the other's figures
                print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
    if not args.one_process:  # an engine's own process: the parent sums up
        print(f"GPU engines measured: {len({step.engine for step in steps})} in {time.monotonic() - began:.0f} s")


def measure_each_alone(engines: list[str], args: argparse.Namespace, began: float) -> int:
    """Each engine measured by a process of its own, one after another, each in its share of what is left of the
    budget (this module with the same arguments, the last ones overriding: `--engines NAME --budget-s SHARE --json
    PART --one-process`). On a GPU a device-side assert (an index past an embedding, say) ends its process's CUDA
    context: the next engine starts on a clean one. A process past its share by `ENGINE_GRACE_S` is stopped (its
    figures are kept: they are written after every step). Their figures are merged into `--json`. → how many
    engines gave figures."""
    merged: dict[str, Any] = {"steps": [], "frame_steps": []}
    with tempfile.TemporaryDirectory() as scratch:
        for index, name in enumerate(engines):
            share = (began + args.budget_s - time.monotonic()) / (len(engines) - index)
            if share < 10:
                print(f"{name}: skipped: {share:.0f} s of the budget left", flush=True)
                continue
            part = Path(scratch) / f"{name}.json"
            command = [sys.executable, "-m", "bench.gpu", *sys.argv[1:], "--engines", name, "--budget-s",
                       f"{share:.0f}", "--json", str(part), "--one-process"]
            try:
                done = subprocess.run(command, check=False, timeout=share + ENGINE_GRACE_S)
                if done.returncode != 0:
                    print(f"{name}: its process ended with exit code {done.returncode}", flush=True)
            except subprocess.TimeoutExpired:
                print(f"{name}: stopped {ENGINE_GRACE_S:.0f} s past its share of the budget", flush=True)
            if part.is_file():
                figures = json.loads(part.read_text())
                merged = {**figures, "steps": merged["steps"] + figures["steps"],
                          "frame_steps": merged["frame_steps"] + figures["frame_steps"]}
                if args.json:
                    args.json.write_text(json.dumps(merged, indent=1) + "\n")
    return len({step["engine"] for step in merged["steps"]})


if __name__ == "__main__":
    main()
