"""Piper, the default engine: real synthesis, intelligible length, every format decoded back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.media.codecs import FORMATS, decode, encode
from backend.media.engine import ReferenceVoice, SynthesisError, SynthesisOptions
from workers.engine_loader import build_engine
from workers.engines.piper import PiperEngine, installed_voice_models

VOICE = "en_US-joe-medium"
TEXT = ("LockN turns text into speech on your own machines. "
        "This sentence is here to make the clip a few seconds long, so its length can be checked.")
#: Speech runs at about 15 characters a second (measured with this voice: 71 characters → 4.7 s).
CHARS_PER_SECOND = 15.0


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    engine = PiperEngine()
    engine.load()
    return engine


def speak(engine: PiperEngine, text: str = TEXT, voice: str = VOICE) -> np.ndarray:
    return np.concatenate(list(engine.synthesize(text, voice, SynthesisOptions())))


def test_engine_describes_itself_and_its_bundled_voice(engine: PiperEngine) -> None:
    info = engine.describe()
    assert (info.name, info.sample_rate, info.supports_cloning, info.device) == ("piper", 22050, False, "cpu")
    (voice,) = [v for v in engine.voices() if v.id == VOICE]
    assert voice.name == "Joe (Piper, en-US, medium)" and voice.language == "en-US"


def test_speech_has_the_length_of_the_text(engine: PiperEngine) -> None:
    pcm = speak(engine)
    seconds = len(pcm) / engine.describe().sample_rate
    estimate = len(TEXT) / CHARS_PER_SECOND
    assert abs(seconds - estimate) / estimate < 0.3, (seconds, estimate)
    assert float(np.sqrt(np.mean(np.square(pcm)))) > 0.02, "not silent"


def test_chunks_come_sentence_by_sentence(engine: PiperEngine) -> None:
    chunks = list(engine.synthesize(TEXT, VOICE))
    assert len(chunks) == 2 and all(c.dtype == np.float32 and c.size for c in chunks)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_holds_the_whole_utterance(engine: PiperEngine, fmt: str) -> None:
    pcm = speak(engine)
    rate = engine.describe().sample_rate
    data = encode(pcm, rate, fmt)
    if fmt == "pcm":
        decoded_seconds = len(data) / 2 / rate
    else:
        decoded, decoded_rate = decode(data)
        decoded_seconds = len(decoded) / decoded_rate
    assert abs(decoded_seconds - len(pcm) / rate) < 0.15, fmt


def test_bad_requests_are_permanent_errors(engine: PiperEngine) -> None:
    with pytest.raises(SynthesisError, match="unknown Piper voice"):
        list(engine.synthesize("hi", "nobody"))
    with pytest.raises(SynthesisError, match="cannot clone"):
        list(engine.synthesize("hi", ReferenceVoice(np.zeros(10, np.float32), "x")))


def test_voices_dropped_into_the_data_dir_are_found(isolated_settings) -> None:
    bundled = installed_voice_models()[0]
    folder = isolated_settings / "voices" / "piper"
    folder.mkdir(parents=True)
    shutil.copy(bundled, folder / "en_US-copy-low.onnx")
    shutil.copy(bundled.with_suffix(".onnx.json"), folder / "en_US-copy-low.onnx.json")
    assert "en_US-copy-low" in [m.stem for m in installed_voice_models(folder)]
    assert "en_US-copy-low" in [v.id for v in build_engine("piper").voices()], "the worker's engine looks there"


def damaged_piper_voice(data_dir: Path, voice: str = "en_US-damaged-medium") -> Path:
    """A Piper voice whose config is right and whose model is not an ONNX file at all (a download cut short),
    in the data dir's voice folder, beside the installed voices."""
    folder = data_dir / "voices" / "piper"
    folder.mkdir(parents=True, exist_ok=True)
    installed = installed_voice_models()[0]
    model = folder / f"{voice}.onnx"
    model.write_bytes(b"not an onnx model, the download was cut short" * 100)
    model.with_suffix(".onnx.json").write_text(installed.with_suffix(".onnx.json").read_text())
    return model


def test_a_damaged_voice_is_left_out_and_the_voices_beside_it_speak(isolated_settings: Path) -> None:
    """Voices dropped into the folder with a model cut short, a config that is not JSON and one that is JSON but
    not Piper's: each is left out with the file at fault (no path: the card is not the log), the installed voice
    still speaks."""
    damaged_piper_voice(isolated_settings)
    unreadable = isolated_settings / "voices" / "piper" / "en_US-unreadable-low.onnx"
    shutil.copy(installed_voice_models()[0], unreadable)
    unreadable.with_suffix(".onnx.json").write_text('{"audio": {"sample_rate": 16000}, "espeak": ')
    incomplete = unreadable.with_name("en_US-incomplete-low.onnx")
    shutil.copy(installed_voice_models()[0], incomplete)
    incomplete.with_suffix(".onnx.json").write_text('{"audio": {"sample_rate": 16000}}')  # JSON, not Piper's
    engine = build_engine("piper")
    # Before loading (a prefork worker's heartbeat): the config that cannot be read is already known.
    assert "en_US-unreadable-low" not in [v.id for v in engine.voices()]
    assert engine.describe().voice_failures == {
        "en_US-unreadable-low": ".onnx.json config unreadable (JSONDecodeError)"}
    engine.load()
    assert [v.id for v in engine.voices()] == [VOICE]
    assert engine.describe().voice_failures == {
        "en_US-damaged-medium": ".onnx model unreadable (InvalidProtobuf)",
        "en_US-incomplete-low": ".onnx.json config unreadable (KeyError)",
        "en_US-unreadable-low": ".onnx.json config unreadable (JSONDecodeError)"}
    assert len(speak(engine, "Still speaking.")) > engine.sample_rate(VOICE) // 2
    with pytest.raises(SynthesisError, match=r"^the Piper voice 'en_US-damaged-medium' could not be loaded on this "
                                             r"worker: \.onnx model unreadable \(InvalidProtobuf\)$"):
        list(engine.synthesize("hi", "en_US-damaged-medium"))
    with pytest.raises(SynthesisError, match="unknown Piper voice 'en_US-nobody-medium'"):
        list(engine.synthesize("hi", "en_US-nobody-medium"))


def test_a_loaded_engine_takes_in_voices_added_replaced_and_removed(isolated_settings: Path) -> None:
    """`refresh` (run before each job): a voice dropped in is loaded and speaks at its own rate, one whose files
    are replaced by damaged ones is dropped with the reason, one deleted is forgotten; nothing changed, nothing
    is read again (the voices that stayed are the same objects)."""
    engine = build_engine("piper")
    engine.load()
    bundled = engine._voices[VOICE]  # noqa: SLF001 - the loaded voice object: kept, not loaded again
    assert engine.refresh() is False
    folder = isolated_settings / "voices" / "piper"
    folder.mkdir(parents=True)
    added = folder / "en_US-added-x_low.onnx"
    shutil.copy(installed_voice_models()[0], added)
    config = json.loads(installed_voice_models()[0].with_suffix(".onnx.json").read_text())
    added.with_suffix(".onnx.json").write_text(json.dumps({**config, "audio": {**config["audio"],
                                                                               "sample_rate": 16000}}))
    assert engine.refresh() is True and engine.refresh() is False
    assert [v.id for v in engine.voices()] == [VOICE, "en_US-added-x_low"]
    assert engine.sample_rate("en_US-added-x_low") == 16000, "the added voice's own rate, before its first job"
    assert len(speak(engine, "Newly added.", "en_US-added-x_low")) > 16000 // 2
    assert engine._voices[VOICE] is bundled  # noqa: SLF001
    shutil.copy(added, folder / f"{VOICE}.onnx")  # a second voice with the installed one's id: left out
    shutil.copy(added.with_suffix(".onnx.json"), folder / f"{VOICE}.onnx.json")
    assert engine.refresh() is True
    assert engine._voices[VOICE] is bundled and engine.sample_rate(VOICE) == 22050  # noqa: SLF001

    added.write_bytes(b"cut short")  # replaced by a download that stopped
    assert engine.refresh() is True
    assert [v.id for v in engine.voices()] == [VOICE]
    assert engine.describe().voice_failures == {"en_US-added-x_low": ".onnx model unreadable (InvalidProtobuf)"}
    added.unlink()
    added.with_suffix(".onnx.json").unlink()
    assert engine.refresh() is True
    assert [v.id for v in engine.voices()] == [VOICE] and engine.describe().voice_failures == {}
    with pytest.raises(SynthesisError, match="unknown Piper voice 'en_US-added-x_low'"):
        list(engine.synthesize("hi", "en_US-added-x_low"))


def test_an_engine_none_of_whose_voices_loads_fails_to_load_naming_each(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Only damaged voices (the installed packages hidden from this engine): its load fails, saying why each."""
    from workers.engines import piper

    model = damaged_piper_voice(tmp_path)
    monkeypatch.setattr(piper, "_package_voice_models", lambda: ())
    with pytest.raises(RuntimeError) as failure:
        PiperEngine(model.parent).load()
    assert str(failure.value) == ("no Piper voice could be loaded (en_US-damaged-medium: .onnx model unreadable "
                                  "(InvalidProtobuf))")


def test_speed_scales_duration_as_on_every_engine(engine: PiperEngine) -> None:
    from tests.speed_check import assert_speed_scales_duration

    assert_speed_scales_duration(engine, TEXT, VOICE)


def test_each_voice_is_stored_at_its_own_sample_rate(embedded_broker, database, isolated_settings) -> None:
    """Two Piper voices of different rates (as x_low voices are 16 kHz, medium ones 22.05 kHz): each job's WAV
    header carries its own voice's rate, never the first voice's."""
    import json
    import secrets

    import soundfile as sf
    from sqlmodel import Session

    from backend.core.db import get_engine
    from backend.core.models import Job
    from backend.services.jobs.runner import run_job

    bundled = installed_voice_models()[0]
    folder = isolated_settings / "voices" / "piper"
    folder.mkdir(parents=True)
    shutil.copy(bundled, folder / "en_US-slow-x_low.onnx")
    config = json.loads(bundled.with_suffix(".onnx.json").read_text())
    config["audio"]["sample_rate"] = 16000
    (folder / "en_US-slow-x_low.onnx.json").write_text(json.dumps(config))
    engine = build_engine("piper")
    engine.load()
    assert (engine.sample_rate(VOICE), engine.sample_rate("en_US-slow-x_low")) == (22050, 16000)
    for voice, rate in ((VOICE, 22050), ("en_US-slow-x_low", 16000)):
        job = Job(id="job_" + secrets.token_hex(10), owner="auth0|alice", voice_id=voice, engine="piper",
                  text="Each voice has its rate.", text_chars=24, format="wav")
        with Session(get_engine(), expire_on_commit=False) as session:
            session.add(job)
            session.commit()
        run_job(job.id, {"piper": engine})
        with Session(get_engine()) as session:
            stored = session.get(Job, job.id)
        assert stored is not None and stored.status == "succeeded" and stored.audio_path
        info = sf.info(stored.audio_path)
        assert info.samplerate == rate, voice
        assert abs(info.duration - stored.duration_s) < 0.01, "the row's duration counts samples at the same rate"
