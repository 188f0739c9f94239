"""Fish Speech through its real loading and inference code, on a tiny random checkpoint made here.

Real weights come from a model hub this machine cannot reach; a randomly initialised model of the
same architecture exercises the same code: load, plain synthesis, synthesis with a reference voice,
the package's own streaming engine. How LockN's batched loop compares with the package's is
`tests/test_fish_serving.py`. Skipped (with the reason) where fish-speech is not installed; CI installs it
(`make setup-fish`) and sets LOCKN_REQUIRE_FISH=1, so there a missing install fails.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from backend.core.settings import get_settings
from tests.conftest import reset_caches
from backend.media.engine import ReferenceVoice, SynthesisOptions

if importlib.util.find_spec("fish_speech") is None:
    if os.environ.get("LOCKN_REQUIRE_FISH") == "1":
        raise RuntimeError("LOCKN_REQUIRE_FISH=1 but fish-speech is not installed: run `make setup-fish`")
    pytest.skip("fish-speech is not installed: `make setup-fish` installs it", allow_module_level=True)

MAX_NEW_TOKENS = 48


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fish_tiny import make_tiny_checkpoint

    folder = tmp_path_factory.mktemp("fish-tiny")
    make_tiny_checkpoint(folder)
    return folder


@pytest.fixture
def fish_settings(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCKN_FISH_CHECKPOINT_DIR", str(checkpoint))
    monkeypatch.setenv("LOCKN_FISH_DEVICE", "cpu")
    monkeypatch.setenv("LOCKN_FISH_MAX_NEW_TOKENS", str(MAX_NEW_TOKENS))
    reset_caches()
    return checkpoint


@pytest.fixture(scope="module")
def engine(checkpoint: Path):
    """One loaded engine for the module (loading is what a worker does once per process)."""
    from workers.engines.fish_speech import FishSpeechEngine

    fish = FishSpeechEngine(checkpoint, device="cpu", max_new_tokens=MAX_NEW_TOKENS)
    assert fish.unavailable_reason() is None
    fish.load()
    return fish


@pytest.fixture(scope="module")
def package_engine(checkpoint: Path):
    """The package's own `TTSInferenceEngine` (one request at a time), loaded by `fish_compat.load_engine`."""
    from workers.engines import fish_compat

    return fish_compat.load_engine(checkpoint, device="cpu")


def reference_clip(rate: int, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).normal(0, 0.05, t.size)
    return (0.3 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32)


def test_engine_describes_itself(engine, fish_settings) -> None:
    info = engine.describe()
    assert (info.name, info.sample_rate, info.supports_cloning, info.device) == ("fish", 44100, True, "cpu")
    assert [v.id for v in engine.voices()] == ["fish-default"]


def test_plain_synthesis_yields_float_audio(engine, fish_settings) -> None:
    chunks = list(engine.synthesize("Hello from LockN.", "fish-default", SynthesisOptions()))
    audio = np.concatenate(chunks)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert audio.size % engine.codec.frame_length == 0
    assert audio.size <= MAX_NEW_TOKENS * engine.codec.frame_length


def test_reference_voice_changes_the_prompt(engine, fish_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone's clip is encoded by the codec into the prompt, with its transcript, before the text."""
    decoder = engine.decoder
    prompts, references = [], []
    encode, load = decoder.encode, decoder.references
    monkeypatch.setattr(decoder, "encode", lambda request: (prompts.append(encode(request)), prompts[-1])[1])
    monkeypatch.setattr(decoder, "references", lambda clips: (references.append(load(clips)), references[-1])[1])
    plain = np.concatenate(list(engine.synthesize("Same words.", "fish-default")))
    clip = reference_clip(engine.describe().sample_rate)
    cloned = np.concatenate(list(engine.synthesize("Same words.", ReferenceVoice(clip, "The reference talks."))))
    ((codes,), texts), = references  # the plain voice asked for none
    assert texts == ["The reference talks."]
    frames = int(np.ceil(clip.size / engine.codec.frame_length))
    assert tuple(codes.shape) == (10, frames), "the clip is encoded into the codec's 10 codebooks"
    plain_prompt, cloned_prompt = prompts
    assert cloned_prompt.shape[1] > plain_prompt.shape[1] + frames, "the clip's codes and transcript lead the prompt"
    assert plain.size > 0 and cloned.size > 0


def test_the_package_s_streaming_yields_a_header_then_the_same_audio(package_engine) -> None:
    from fish_speech.utils.schema import ServeTTSRequest

    request = dict(text="Streaming test.", max_new_tokens=MAX_NEW_TOKENS, seed=7, chunk_length=200,
                   temperature=0.7, top_p=0.8, repetition_penalty=1.1)
    streamed = list(package_engine.inference(ServeTTSRequest(streaming=True, **request)))
    assert streamed[0].code == "header" and streamed[0].audio[1].tobytes()[:4] == b"RIFF"
    segments = [r.audio[1] for r in streamed if r.code == "segment"]
    final = next(r.audio[1] for r in streamed if r.code == "final")
    assert segments and np.array_equal(np.concatenate(segments), final)
    whole = next(r.audio[1] for r in package_engine.inference(ServeTTSRequest(**request)) if r.code == "final")
    assert np.array_equal(whole, final), "same seed, same audio, streamed or not"


def test_cloned_voice_job_runs_on_a_fish_worker(fish_settings, embedded_broker, database) -> None:
    """Upload a clone, queue a job with it: a `gpu`-queue worker running Fish Speech speaks it."""
    import io
    import time

    import soundfile as sf

    from backend.ops.supervisor import Supervisor, worker_command
    from backend.services.jobs.service import enqueue_synthesis, job_status
    from backend.services.voices.service import create_cloned_voice
    from tests.conftest import wait_for_worker_heartbeat
    from backend.media.codecs import decode

    buffer = io.BytesIO()
    sf.write(buffer, reference_clip(22050, seconds=12), 22050, format="WAV")
    voice = create_cloned_voice("auth0|ada", "Ada", "The reference talks for twelve seconds.", buffer.getvalue())
    env = {**os.environ, "LOCKN_ENGINES": "fish"}
    supervisor = Supervisor()
    supervisor.start("gpu-worker", worker_command(queues="gpu"), env=env)
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        job = enqueue_synthesis("auth0|ada", "Cloned hello.", voice.id, "wav")
        assert job.engine == "fish"
        deadline = time.monotonic() + 120
        while (status := job_status(job.id, "auth0|ada")).status not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the fish job did not finish"
            time.sleep(0.2)
        assert status.status == "succeeded", status.error
        samples, rate = decode(Path(status.audio_path).read_bytes())
        assert rate == 44100 and samples.size > 0
    finally:
        supervisor.stop_all()


def test_speed_scales_duration_as_on_every_engine(engine, fish_settings) -> None:
    """Fish Speech has no speed control: the job runner changes the tempo of its audio."""
    from tests.speed_check import assert_speed_scales_duration

    assert_speed_scales_duration(engine, "Speed means the same on every engine.", "fish-default")
