"""The peer comparison's plumbing works before a GPU is lent (`bench.peer_qwen`, `bench/peer_lease.sh`).

faster-qwen3-tts runs only on CUDA and only on transformers 5, so nothing here runs it: these check what a first
lease must not discover — the arguments, the budget rule it shares with LockN's bench, the JSON's shape, the plain
message when the package or CUDA is missing, and that the lease script installs the peer's requirements into its
own site directory, builds the checkpoint in LockN's environment and measures without LockN's site on the path,
skipping cleanly (exit 0) without a bundle.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import peer_qwen
from bench.gpu import SENTENCE_TOKENS, StepReport, measure_counts
from bench.gpu_bundle import PEER_PINS, carried, peer_bundle
from tests.test_gpu_bundle import _write_wheel

ROOT = Path(__file__).resolve().parent.parent


def test_arguments_default_to_lockn_s_sentence_and_need_a_checkpoint() -> None:
    args = peer_qwen.parse(["--checkpoint", "/x", "--streams", "1,8,16"])
    assert args.streams == [1, 8, 16] and args.max_new_tokens == SENTENCE_TOKENS["qwen3"] == 126
    assert args.chunk_size == 8 and args.budget_s == 120
    with pytest.raises(SystemExit):
        peer_qwen.parse([])  # no checkpoint, not a smoke run
    with pytest.raises(argparse.ArgumentTypeError):
        peer_qwen.stream_counts("1,0")


class _Steady:
    """An engine whose every sentence takes `seconds` and yields `pieces` pieces of 0.1 s audio (24 kHz): what
    measure_counts' budget rule needs to be seen working, without a model."""

    def __init__(self, seconds: float, pieces: int = 4) -> None:
        self.seconds, self.pieces = seconds, pieces

    def voices(self) -> list[peer_qwen.Voice]:
        return [peer_qwen.Voice("aiden")]

    def describe(self) -> peer_qwen.Described:
        return peer_qwen.Described(24_000)

    def synthesize(self, text: str, voice: str):  # type: ignore[no-untyped-def]
        for _ in range(self.pieces):
            time.sleep(self.seconds / self.pieces)
            yield [0.0] * 2_400


def test_a_step_that_would_not_fit_in_what_is_left_is_not_started(capsys: pytest.CaptureFixture[str]) -> None:
    recorded: list[StepReport] = []
    steps = measure_counts(_Steady(0.4), "peer", "graphs", [1, 2, 4], 1, "cpu", time.monotonic() + 0.9, 1.5,
                           recorded.append)
    assert [step.streams for step in steps] == [1] and recorded == steps
    assert steps[0].audio_s == pytest.approx(0.4) and steps[0].warm_up_s == 1.5 and not steps[0].cut
    assert "2 streams skipped" in capsys.readouterr().out


def test_the_report_has_bench_gpu_s_shape_and_says_what_ran(tmp_path: Path) -> None:
    args = peer_qwen.parse(["--checkpoint", str(tmp_path), "--json", str(tmp_path / "peer.json")])
    steps = measure_counts(_Steady(0.05), peer_qwen.PEER, "graphs", [1, 2], 1, "cpu", time.monotonic() + 30, 0.0,
                           lambda step: None)
    peer_qwen.write(args.json, peer_qwen.report("NVIDIA H200", steps, args))
    written = json.loads((tmp_path / "peer.json").read_text())
    assert written["device"] == "NVIDIA H200" and written["frames_per_sentence"] == 126
    assert set(written["versions"]) == {"faster-qwen3-tts", "qwen-tts-hf", "transformers", "torch"}
    assert [step["streams"] for step in written["steps"]] == [1, 2]
    assert {"first_audio_p50_ms", "first_audio_worst_ms", "aggregate_rtf", "slowest_stream_rtf",
            "streams_in_real_time", "engine", "step"} <= set(written["steps"][0])
    assert written["steps"][0]["engine"] == "faster-qwen3-tts"


@pytest.mark.skipif(importlib.util.find_spec("faster_qwen3_tts") is not None, reason="the peer is installed here")
def test_without_the_peer_it_says_so_and_measures_nothing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.peer_qwen", "--checkpoint", str(tmp_path), "--json",
                           str(tmp_path / "peer.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "faster-qwen3-tts is not installed here" in done.stdout and "peer steps measured: 0" in done.stdout
    written = json.loads((tmp_path / "peer.json").read_text())
    assert written["steps"] == [] and "not installed" in written["note"]


def test_the_peer_bundle_pins_every_requirement_and_skips_what_lockn_carries(tmp_path: Path) -> None:
    shared = tmp_path / "whl"
    shared.mkdir()
    _write_wheel(shared, "accelerate", "")  # accelerate-1.0: another version than the pin, so it travels again
    (shared / "librosa-0.11.0-py3-none-any.whl").write_bytes(b"")
    needed = peer_bundle(tmp_path / "peer", shared)
    assert carried(shared) == {("accelerate", "1.0"), ("librosa", "0.11.0")}
    assert "librosa" not in needed and needed["accelerate"] == PEER_PINS["accelerate"]
    assert needed["faster-qwen3-tts"] == "0.5.4" and needed["transformers"].startswith("5.")
    pins = (tmp_path / "peer" / "requirements.txt").read_text().split()
    assert pins == [f"{name}=={version}" for name, version in PEER_PINS.items()]


def _lease(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "bench" / "peer_lease.sh")], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(out), "PY": sys.executable, **env}, timeout=600, check=False)
    return done, out


def test_the_peer_lease_skips_cleanly_without_a_bundle_or_a_budget(tmp_path: Path) -> None:
    done, out = _lease(tmp_path, PEER_WHEELS=str(tmp_path / "none"))
    assert done.returncode == 0 and "make gpu-bundle-peer" in done.stdout
    done, out = _lease(tmp_path, PEER_S="0")
    assert done.returncode == 0 and "PEER_S=0, not measured" in (out / "lease.log").read_text()


@pytest.mark.skipif(importlib.util.find_spec("qwen_tts") is None, reason="make setup-qwen builds the checkpoint")
def test_the_peer_lease_installs_builds_and_measures_in_its_own_site(tmp_path: Path) -> None:
    """A probe wheel stands for the bundle (the real one is for the GPU machine's CPython 3.12); the tiny
    layout for the 1.7B one. Where the peer is absent (here) bench.peer_qwen says so, and the lease goes on."""
    done, out = _lease(tmp_path, **_probe_bundle(tmp_path), PEER_CHECKPOINT=str(tmp_path / "qwen"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "lockn_peer_probe" / "__init__.py").read_text() == "VALUE = 7\n"
    log = (out / "lease.log").read_text()
    assert "1 packages installed" in log and "tiny CustomVoice, random weights, built on cpu" in log
    assert "bench.peer_qwen exit code 0" in log and "peer steps measured: 0" in log
    assert re.search(r"budget (\d+)s \(within (\d+)s\)", log), "its budget is what PEER_S leaves, less the spare"
    assert json.loads((out / "peer.json").read_text())["checkpoint"] == str(tmp_path / "qwen")
    assert not (tmp_path / "qwen").exists(), "the checkpoint it built is removed afterwards"


def test_the_peer_lease_measures_a_checkpoint_already_built_and_leaves_it(tmp_path: Path) -> None:
    """gpu_lease.sh hands over the Qwen checkpoint `bench.gpu --weights` kept: nothing is built again (seconds of
    a short lease), and what the peer did not build it does not remove."""
    kept = tmp_path / "weights" / "qwen3-1.7b"
    kept.mkdir(parents=True)
    (kept / "config.json").write_text("{}\n")
    done, out = _lease(tmp_path, **_probe_bundle(tmp_path), PEER_CHECKPOINT=str(kept))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "lease.log").read_text()
    assert f"measured on the checkpoint already in {kept}" in log and "built on" not in log
    assert "bench.peer_qwen exit code" in log
    assert (kept / "config.json").exists()


def test_the_peer_lease_stops_when_too_little_time_is_left(tmp_path: Path) -> None:
    done, out = _lease(tmp_path, **{**_probe_bundle(tmp_path), "PEER_S": "20"}, PEER_CHECKPOINT=str(tmp_path / "q"))
    assert done.returncode == 0
    assert "too little to build its checkpoint" in (out / "lease.log").read_text()
    assert not (tmp_path / "q").exists() and not (out / "peer.json").exists()


def _probe_bundle(tmp_path: Path) -> dict[str, str]:
    """The peer lease's settings with a probe wheel for its bundle (`lockn_peer_probe`), its own site folders and
    the tiny layout; 150 s for all of it."""
    peer = tmp_path / "peer"
    peer.mkdir(exist_ok=True)
    _write_wheel(peer, "lockn_peer_probe", "VALUE = 7\n")
    (peer / "requirements.txt").write_text("lockn_peer_probe==1.0\n")
    return {"PEER_WHEELS": str(peer), "PEER_SITE": str(tmp_path / "site"), "PEER_SIZE": "tiny", "PEER_S": "150",
            "WHEELS": str(tmp_path / "lockn-whl"), "SITE": str(tmp_path / "lockn-site"), "PEER_ARGS": "--streams 1"}


def test_qwen_tts_unused_torchaudio_import_is_answered_only_when_torchaudio_fails() -> None:
    """`import qwen_tts` imports torchaudio's kaldi module (never run for 12 Hz models); a torchaudio that does not
    import must not cost the peer's figures, and a real one is left alone. In a child: sys.modules changes."""
    probe = ("from bench.peer_qwen import unused_torchaudio\n"
             "note = unused_torchaudio()\n"
             "import torchaudio.compliance.kaldi as kaldi\n"
             "try:\n    kaldi.fbank\nexcept RuntimeError as exc:\n    print('STOOD-IN', note, exc)\n"
             "else:\n    print('REAL', repr(note))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    if importlib.util.find_spec("torchaudio") is None:
        assert done.stdout.startswith("STOOD-IN torchaudio does not import here") and "stood in" in done.stdout
    else:
        assert done.stdout.strip() == "REAL ''" or "does not import here" in done.stdout  # a broken install
