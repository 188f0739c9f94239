"""Qwen3-TTS through its real loading and inference code, on tiny random checkpoints made here.

Real weights come from a model hub this machine cannot reach; randomly initialised CustomVoice and Base models
of the same architecture (`tests/qwen_tiny.py`) go through the same code: `Qwen3TTSModel.from_pretrained`,
preset speakers, instructions, cloning from a reference clip, sentence-by-sentence chunks, and a worker
process speaking jobs from the real queue. Skipped (with the reason) where qwen-tts is not installed; CI
installs it (`make setup-qwen`) and sets LOCKN_REQUIRE_QWEN=1, so there a missing install fails.
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.media.engine import ReferenceVoice, SynthesisError, SynthesisOptions
from tests.conftest import reset_caches, wait_for_job

if importlib.util.find_spec("qwen_tts") is None:
    if os.environ.get("LOCKN_REQUIRE_QWEN") == "1":
        raise RuntimeError("LOCKN_REQUIRE_QWEN=1 but qwen-tts is not installed: run `make setup-qwen`")
    pytest.skip("qwen-tts is not installed: `make setup-qwen` installs it", allow_module_level=True)

#: Codec frames per sentence (12.5 per second): random weights seldom stop early, so this sets the length.
MAX_NEW_TOKENS = 24
FRAME_SAMPLES = 1920  # 24 kHz / 12.5 Hz
OWNER = "auth0|ada"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    return {kind: make_tiny_qwen_checkpoint(tmp_path_factory.mktemp(f"qwen-{kind}"), kind)
            for kind in ("custom_voice", "base")}


@pytest.fixture(scope="module")
def engine(checkpoints: dict[str, Path]):
    """One engine with both models, loaded once for the module (what a worker does once per process)."""
    import torch

    from workers.engines.qwen3 import Qwen3Engine

    torch.set_num_threads(1)  # two threads on this 2-CPU machine make each tiny call ~25× slower
    qwen = Qwen3Engine(checkpoints["custom_voice"], checkpoints["base"], device="cpu", max_new_tokens=MAX_NEW_TOKENS)
    assert qwen.unavailable_reason() is None
    qwen.load()
    return qwen


def recorded_generate_calls(model) -> list[dict]:  # type: ignore[no-untyped-def]
    """Keep the keyword arguments of every call the package makes to its model's `generate` (one per sentence)."""
    calls: list[dict] = []
    real = model.model.generate

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return real(*args, **kwargs)

    model.model.generate = recording
    return calls


def reference_clip(rate: int, seconds: float = 3.0, pitch: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(int(pitch)).normal(0, 0.05, t.size)
    return (0.3 * np.sin(2 * np.pi * pitch * t) + noise).astype(np.float32)


def test_both_models_load_through_from_pretrained_and_describe_themselves(engine) -> None:
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration

    assert {kind: type(model.model) for kind, model in engine._models.items()} == {
        "custom_voice": Qwen3TTSForConditionalGeneration, "base": Qwen3TTSForConditionalGeneration}
    info = engine.describe()
    assert (info.name, info.sample_rate, info.supports_cloning, info.supports_instructions, info.device) == \
        ("qwen3", 24000, True, True, "cpu")
    assert [(v.id, v.name, v.language) for v in engine.voices()] == [
        ("qwen3-aiden", "Aiden (Qwen3-TTS)", "en"), ("qwen3-serena", "Serena (Qwen3-TTS)", "zh")]


def test_a_preset_speaker_streams_a_sentence_in_pieces(engine) -> None:
    """Audio leaves the engine every few codec frames, not once per sentence: the first piece holds two frames."""
    from workers.engines.qwen3_stream import SCHEDULE

    chunks = list(engine.synthesize("Hello from LockN.", "qwen3-aiden", SynthesisOptions()))
    assert len(chunks) > 1 and chunks[0].size == SCHEDULE.first * FRAME_SAMPLES
    released = [sum(chunk.size for chunk in chunks[:index]) // FRAME_SAMPLES for index in range(len(chunks))]
    assert all(chunk.size == SCHEDULE.wanted(heard) * FRAME_SAMPLES for chunk, heard in zip(chunks[1:-1], released[1:]))
    audio = np.concatenate(chunks)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size % FRAME_SAMPLES == 0 and audio.size <= MAX_NEW_TOKENS * FRAME_SAMPLES
    assert 0.0 < float(np.abs(audio).max()) <= 1.0


def test_an_instruction_reaches_the_prompt(engine) -> None:
    model = engine._models["custom_voice"]
    calls = recorded_generate_calls(model)
    try:
        list(engine.synthesize("Same words.", "qwen3-serena", SynthesisOptions(instructions="Speak slowly and warmly.")))
        list(engine.synthesize("Same words.", "qwen3-serena", SynthesisOptions()))
    finally:
        del model.model.generate
    with_instruction, plain = calls
    assert model.processor.decode(with_instruction["instruct_ids"][0][0]) == \
        "<|im_start|>user\nSpeak slowly and warmly.<|im_end|>\n"
    assert plain["instruct_ids"] == [None]
    assert with_instruction["speakers"] == plain["speakers"] == ["serena"]


def test_reference_audio_changes_the_prompt(engine) -> None:
    model = engine._models["base"]
    calls = recorded_generate_calls(model)
    low, high = reference_clip(24000, pitch=180.0), reference_clip(24000, pitch=330.0)
    try:
        for voice in (ReferenceVoice(low, "The reference talks."), ReferenceVoice(high, "The reference talks."),
                      ReferenceVoice(low, "")):
            assert np.concatenate(list(engine.synthesize("Same words.", voice))).size > 0
    finally:
        del model.model.generate
    first, second, untranscribed = (call["voice_clone_prompt"] for call in calls)
    frames = int(np.ceil(low.size / FRAME_SAMPLES))
    assert tuple(first["ref_code"][0].shape) == (frames, 4), "the clip is encoded into the codec's 4 code groups"
    assert not np.array_equal(first["ref_code"][0].numpy(), second["ref_code"][0].numpy())
    assert not np.allclose(first["ref_spk_embedding"][0].numpy(), second["ref_spk_embedding"][0].numpy())
    assert model.processor.decode(calls[0]["ref_ids"][0][0]) == "<|im_start|>assistant\nThe reference talks.<|im_end|>\n"
    # Without a transcript the speaker embedding alone carries the voice (Qwen's x-vector mode).
    assert untranscribed["ref_code"] == [None] and untranscribed["x_vector_only_mode"] == [True]
    assert np.allclose(untranscribed["ref_spk_embedding"][0].numpy(), first["ref_spk_embedding"][0].numpy())


def test_the_clone_prompt_is_made_once_per_job(engine) -> None:
    model = engine._models["base"]
    made: list[int] = []
    real = model.create_voice_clone_prompt
    model.create_voice_clone_prompt = lambda **kwargs: (made.append(1), real(**kwargs))[1]
    try:
        voice = ReferenceVoice(reference_clip(24000), "The reference talks.")
        for sentence in ("One.", "Two.", "Three."):
            list(engine.synthesize(sentence, voice))
    finally:
        del model.create_voice_clone_prompt
    assert made == [1]


def test_bad_input_fails_with_a_sentence(engine, checkpoints) -> None:
    from workers.engines.qwen3 import Qwen3Engine

    with pytest.raises(SynthesisError, match="unknown Qwen3-TTS voice 'qwen3-nobody'"):
        list(engine.synthesize("Hello.", "qwen3-nobody"))
    custom_only = Qwen3Engine(checkpoints["custom_voice"], device="cpu")
    assert not custom_only.describe().supports_cloning
    assert Qwen3Engine(None).unavailable_reason() == (
        "no weights: run `python -m backend.ops.cli models pull qwen3-custom` (or set LOCKN_QWEN_CHECKPOINT_DIR)")
    assert "lacks config.json" in (Qwen3Engine(checkpoints["base"].parent).unavailable_reason() or "")


def test_speed_scales_duration_as_on_every_engine(engine) -> None:
    """Qwen3-TTS has no speed control: the job runner changes the tempo of its audio, for presets and clones."""
    from tests.speed_check import assert_speed_scales_duration

    assert_speed_scales_duration(engine, "Speed means the same on every engine.", "qwen3-aiden")
    assert_speed_scales_duration(engine, "Speed means the same on every engine.",
                                 ReferenceVoice(reference_clip(24000), "The reference talks."))


# ----- through the real queue --------------------------------------------------------------------------


@pytest.fixture
def qwen_worker(checkpoints: dict[str, Path], embedded_broker, database, monkeypatch: pytest.MonkeyPatch):
    """A `gpu`-queue worker process running only Qwen3-TTS (both models), as a GPU machine would."""
    from backend.ops.supervisor import Supervisor, worker_command
    from tests.conftest import wait_for_worker_heartbeat

    monkeypatch.setenv("LOCKN_QWEN_CHECKPOINT_DIR", str(checkpoints["custom_voice"]))
    monkeypatch.setenv("LOCKN_QWEN_CLONE_CHECKPOINT_DIR", str(checkpoints["base"]))
    monkeypatch.setenv("LOCKN_QWEN_DEVICE", "cpu")
    monkeypatch.setenv("LOCKN_QWEN_MAX_NEW_TOKENS", str(MAX_NEW_TOKENS))
    reset_caches()
    supervisor = Supervisor()
    supervisor.start("gpu-worker", worker_command(queues="gpu"),
                     env={**os.environ, "LOCKN_ENGINES": "qwen3", "OMP_NUM_THREADS": "1"})
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        yield supervisor
    finally:
        supervisor.stop_all()


def test_jobs_on_a_qwen3_worker(qwen_worker) -> None:
    """A preset voice with an instruction (three sentences, three caption cues), and a clone made for Fish Speech
    spoken by Qwen3-TTS, reach `succeeded` on a worker with LOCKN_ENGINES=qwen3."""
    from backend.media.codecs import decode
    from backend.services.jobs.service import enqueue_synthesis, job_captions
    from backend.services.voices.service import create_cloned_voice, list_voices

    job = enqueue_synthesis(OWNER, "First sentence. Second one! Third?", "qwen3-aiden", "wav", captions=True,
                            instructions="Cheerful, a little faster.")
    status = wait_for_job(job.id, OWNER)
    assert (status.status, status.engine, status.instructions) == ("succeeded", "qwen3", "Cheerful, a little faster.")
    samples, rate = decode(Path(status.audio_path).read_bytes())
    assert rate == 24000 and samples.size > 0
    cues = job_captions(job.id, OWNER)["sentences"]
    assert [cue["text"] for cue in cues] == ["First sentence.", "Second one!", "Third?"]
    assert all(cue["end"] > cue["start"] for cue in cues), "every sentence came back as audio of its own"

    buffer = io.BytesIO()
    sf.write(buffer, reference_clip(22050, seconds=12), 22050, format="WAV")
    clone = create_cloned_voice(OWNER, "Ada", "The reference talks for twelve seconds.", buffer.getvalue())
    assert next(v for v in list_voices(OWNER) if v.id == clone.id).engines == ("qwen3",)
    cloned = enqueue_synthesis(OWNER, "Cloned hello.", clone.id, "mp3")
    status = wait_for_job(cloned.id, OWNER)
    assert (status.status, status.engine) == ("succeeded", "qwen3"), status.error


def test_a_job_the_engine_refuses_fails_once_and_is_not_retried(qwen_worker) -> None:
    from sqlmodel import Session

    from backend.core.db import get_engine
    from backend.core.models import Job
    from backend.services.jobs.service import send_job

    with Session(get_engine(), expire_on_commit=False) as session:
        broken = Job(id="job_qwenbroken000000", owner=OWNER, voice_id="qwen3-nobody", engine="qwen3",
                     text="hello", text_chars=5, format="wav")
        session.add(broken)
        session.commit()
    send_job(broken)
    status = wait_for_job(broken.id, OWNER)
    time.sleep(1)
    with Session(get_engine()) as session:
        stored = session.get(Job, broken.id)
    assert status.status == "failed" and stored.attempts == 1
    assert stored.error == "unknown Qwen3-TTS voice 'qwen3-nobody'"


def test_speech_api_with_qwen3(qwen_worker, key_service) -> None:
    """`/v1/models` lists qwen3-tts; `/v1/audio/speech` with a Qwen voice and `instructions` answers audio;
    the library says which engines speak each voice."""
    from fastapi.testclient import TestClient

    from backend.api import build_api
    from backend.services.keys.service import KeySpec, RateLimit

    key = key_service.create(OWNER, KeySpec("qwen", scopes=("tts:read", "tts:write"),
                                            rate_limit=RateLimit(1000, 60)))[1]
    headers = {"Authorization": f"Bearer {key}"}
    app = TestClient(build_api())
    assert "qwen3-tts" in [model["id"] for model in app.get("/v1/models", headers=headers).json()["data"]]
    voices = {v["id"]: v for v in app.get("/api/voice/voices", headers=headers).json()["data"]}
    assert voices["qwen3-aiden"]["engines"] == ["qwen3"] and voices["qwen3-aiden"]["language"] == "en"
    listed = {v["id"]: v for v in app.get("/v1/audio/voices", headers=headers).json()["voices"]}
    assert listed["qwen3-serena"]["engines"] == ["qwen3"]
    spoken = app.post("/v1/audio/speech", headers=headers, json={
        "model": "qwen3-tts", "voice": "qwen3-aiden", "input": "Hello there.", "response_format": "wav",
        "instructions": "Whisper it."})
    assert spoken.status_code == 200, spoken.text
    samples, rate = sf.read(io.BytesIO(spoken.content))
    assert rate == 24000 and samples.size > 0
    too_long = app.post("/v1/audio/speech", headers=headers, json={
        "model": "qwen3-tts", "voice": "qwen3-aiden", "input": "Hi.", "instructions": "x" * 1001})
    assert too_long.status_code == 400 and "instructions" in too_long.text
