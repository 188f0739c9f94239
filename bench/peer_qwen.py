"""faster-qwen3-tts (a maintained peer package: CUDA graphs) measured with bench.gpu's figures, for the README.

    python -m bench.peer_qwen --checkpoint DIR [--streams 1,8] [--sentences 2] [--max-new-tokens 126]
                              [--chunk-size 8] [--budget-s 120] [--json FILE] [--smoke]

Runs where LockN's engines cannot: faster-qwen3-tts 0.5.4 needs transformers >= 5.15.1 and `qwen-tts-hf` (the
`qwen_tts` package rebuilt for transformers 5), LockN pins qwen-tts 0.1.1 on transformers 4.57.3. So this module
imports neither LockN's engines nor its transformers: only the standard library, torch, the peer package and
bench.gpu's stdlib-only figures (`measure_counts`: the same streams, sentence, budget rules and report as LockN's
Qwen). `bench/gpu_lease.sh` builds the checkpoint in LockN's environment (`python -m bench.full_size --qwen DIR`),
then runs this with only the peer's site directory and the machine's own packages on the path.

The peer keeps one static cache and one pair of CUDA graphs per loaded model: two generations at once would
write the same cache. Streams therefore take turns, a whole sentence at a time (what a server built on it
serves); first audio is measured from the moment all streams start, so its worst figure includes the queue.
Each sentence runs to `--max-new-tokens` frames (EOS is suppressed until then: random weights rarely stop, and
LockN's Qwen runs the same count), streamed in chunks of `--chunk-size` frames (the peer's TTFA setting).

`--smoke` checks what can be checked without a GPU: the arguments, and that a missing peer package or CUDA
device is said plainly (exit 0, nothing measured). faster-qwen3-tts's torch backend refuses a CPU.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.metadata as metadata
import importlib.util
import json
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.gpu import SENTENCE, SENTENCE_TOKENS, StepReport, measure_counts

PEER = "faster-qwen3-tts"
#: Distributions whose versions the report names (what was measured, and on what).
REPORTED = (PEER, "qwen-tts-hf", "transformers", "torch")
SUMMARY = "peer steps measured"


@dataclass(frozen=True)
class Voice:
    id: str


@dataclass(frozen=True)
class Described:
    sample_rate: int


class PeerEngine:
    """A loaded FasterQwen3TTS behind the three calls bench.gpu's streams make (voices, describe, synthesize)."""

    def __init__(self, model: Any, frames: int, chunk_size: int, language: str = "English") -> None:
        self.model, self.frames, self.chunk_size, self.language = model, frames, chunk_size, language
        self.turn = threading.Lock()  # one generation at a time: the model's cache and graphs are shared

    def voices(self) -> list[Voice]:
        """The checkpoint's speakers (CustomVoice), sorted: bench.gpu's streams all speak as the first."""
        return [Voice(name) for name in sorted(self.model.model.get_supported_speakers())]

    def describe(self) -> Described:
        return Described(int(self.model.sample_rate))

    def synthesize(self, text: str, voice: str) -> Iterator[Any]:
        """`text` in `voice`, streamed: each decoded chunk as soon as the peer yields it. Closing the iterator
        stops the generation and gives the model to the next stream."""
        with self.turn:
            chunks = self.model.generate_custom_voice_streaming(
                text=text, speaker=voice, language=self.language, max_new_tokens=self.frames,
                min_new_tokens=self.frames, chunk_size=self.chunk_size)
            try:
                for audio, _rate, _timing in chunks:
                    yield audio
            finally:
                chunks.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a Qwen3-TTS 12 Hz CustomVoice folder (bench.full_size)")
    parser.add_argument("--streams", default="1,8", type=stream_counts, help="stream counts, comma-separated")
    parser.add_argument("--sentences", type=int, default=2, help="sentences each stream speaks")
    parser.add_argument("--max-new-tokens", type=int, default=SENTENCE_TOKENS["qwen3"],
                        help="frames per sentence (default: a ~10 s one, as LockN's Qwen)")
    parser.add_argument("--chunk-size", type=int, default=8, help="frames per streamed chunk")
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="loading, warming up and measuring stop starting new steps after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--smoke", action="store_true", help="check the arguments and what is installed only")
    args = parser.parse_args(argv)
    if not args.smoke and args.checkpoint is None:
        parser.error("--checkpoint is required (build one: python -m bench.full_size --qwen DIR)")
    return args


def stream_counts(text: str) -> list[int]:
    """"1,8" -> [1, 8]; a count below 1 is an error, not a skipped step."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"stream counts must be positive integers: {text!r}")
    return counts


def missing() -> str:
    """Why the peer cannot be measured here, or "" when it can."""
    if importlib.util.find_spec("faster_qwen3_tts") is None:
        return (f"{PEER} is not installed here (it needs its own site directory: transformers >= 5.15.1 and "
                "qwen-tts-hf; make gpu-bundle-peer, then bench/gpu_lease.sh installs it)")
    import torch

    if not torch.cuda.is_available():
        return f"{PEER}'s torch backend needs a CUDA device (it refuses a CPU: 'CUDA graphs require CUDA device')"
    return ""


def versions() -> dict[str, str]:
    """The installed versions of what the figures depend on ("" for one not installed)."""
    found = {}
    for name in REPORTED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found


def report(device: str, steps: list[StepReport], args: argparse.Namespace, note: str = "") -> dict[str, Any]:
    """What --json holds: bench.gpu's shape (device, steps) plus what was run and how."""
    return {"device": device, "versions": versions(), "checkpoint": str(args.checkpoint or ""),
            "frames_per_sentence": args.max_new_tokens, "chunk_size": args.chunk_size,
            "sentences": args.sentences, "sentence": SENTENCE, "budget_s": args.budget_s, "note": note,
            "steps": [asdict(step) for step in steps]}


def write(path: Path | None, content: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(content, indent=1) + "\n")


def unused_torchaudio() -> str:
    """"" when the machine's torchaudio imports; otherwise a stand-in for it, and why. `import qwen_tts` imports
    `torchaudio.compliance.kaldi` for its 25 Hz tokenizer, which a 12 Hz checkpoint never runs, and a torchaudio
    built for another torch fails to import: the peer is then measured all the same (a call would raise)."""
    try:
        import torchaudio.compliance.kaldi  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a library built for another torch
        for name in ("torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi"):
            module = sys.modules[name] = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() of it must not raise
            module.__getattr__ = _unused  # type: ignore[method-assign]
            parent, _, leaf = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], leaf, module)
        return f"torchaudio does not import here ({type(exc).__name__}: {exc}); a stand-in answered qwen_tts's import"
    return ""


def _unused(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise RuntimeError(f"torchaudio.{name}: torchaudio does not import here; bench.peer_qwen stood in for it")


def load(checkpoint: Path, frames: int, chunk_size: int) -> tuple[PeerEngine, float, str]:
    """The peer loaded in bfloat16 (as LockN's Qwen on a GPU), its CUDA graphs captured and one sentence spoken
    untimed (as a LockN worker warms up before it says ready); the seconds that took, and a note ("" or why
    torchaudio was stood in for)."""
    note = unused_torchaudio()
    if note:
        print(f"{PEER}: {note}", flush=True)
    import torch
    from faster_qwen3_tts import FasterQwen3TTS

    started = time.perf_counter()
    model = FasterQwen3TTS.from_pretrained(str(checkpoint), device="cuda", dtype=torch.bfloat16)
    model.warmup()
    engine = PeerEngine(model, frames, chunk_size)
    for _ in engine.synthesize(SENTENCE, engine.voices()[0].id):
        pass
    torch.cuda.synchronize()
    return engine, round(time.perf_counter() - started, 1), note


def run(args: argparse.Namespace, steps: list[StepReport]) -> None:
    """Load, warm up and measure each stream count that fits in the budget, into `steps`; the JSON is rewritten
    after every step, so a lease cut short keeps what was measured."""
    import torch

    began = time.monotonic()
    device = torch.cuda.get_device_name()

    engine, warm_up_s, note = load(args.checkpoint, args.max_new_tokens, args.chunk_size)

    def record(step: StepReport) -> None:
        steps.append(step)
        write(args.json, report(device, steps, args, note))

    print(f"{PEER}: loaded and warmed up in {warm_up_s:.1f} s; {args.max_new_tokens} frames per sentence, "
          f"chunks of {args.chunk_size}", flush=True)
    measure_counts(engine, PEER, "graphs", args.streams, args.sentences, "cuda", began + args.budget_s, warm_up_s,
                   record)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    print(f"{PEER} benchmark — " + ", ".join(f"{k} {v or 'absent'}" for k, v in versions().items()), flush=True)
    why = missing() if importlib.util.find_spec("torch") else "torch is not installed here"
    if why or args.smoke:
        print(f"{PEER}: not measured: {why or 'smoke run (arguments and installation checked)'}")
        write(args.json, report("none", [], args, why))
        print(f"{SUMMARY}: 0")
        return
    steps: list[StepReport] = []
    try:
        run(args, steps)
    except Exception as exc:  # noqa: BLE001 - the lease's log and JSON must say why (LockN's figures stand)
        failure = f"failed: {type(exc).__name__}: {exc}"
        print(f"{PEER}: {failure}", flush=True)
        write(args.json, report("cuda", steps, args, failure))
        sys.exit(1)
    print(f"{SUMMARY}: {len(steps)}")


if __name__ == "__main__":
    main()
