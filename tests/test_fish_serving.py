"""Fish Speech at serving speed, checked on the CPU with the tiny random checkpoint (`tests/fish_tiny.py`):

- LockN's own decode loop (`workers/engines/fish_stream.py`) gives the very codes the package's `generate_long`
  gives, greedy (the package's loop with a vanishing top-p) and sampled from the same seed, so taking the loop
  over changes nothing a listener hears;
- streams decoded together (continuous batching, `workers/engines/stream_batcher.py`) give the same codes as each
  alone, also when they join at different times, a cloned voice among them, and when they arrive together and are
  prefilled in one pass;
- the pieces a stream yields join to the package's one-shot decode of the same codes;
- cancelling one of three running streams leaves the other two finishing as they would have;
- one request the engine refuses fails alone, with the engine's message;
- a GPU worker with LOCKN_GPU_MAX_STREAMS=4 runs four Fish jobs at once through the real queue;
- at S1-mini's own layout (grouped heads, query/key norms, scaled embeddings; two layers), the package's codes.
How fast this is on a GPU is `python -m bench.gpu --full-size`'s question, never a test's.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.gpu_serving import (assert_cancelling_one_leaves_the_others, checkpoint_settings, run_to_end,
                               run_four_jobs_on_one_gpu_worker)

if importlib.util.find_spec("fish_speech") is None:
    if os.environ.get("LOCKN_REQUIRE_FISH") == "1":
        raise RuntimeError("LOCKN_REQUIRE_FISH=1 but fish-speech is not installed: run `make setup-fish`")
    pytest.skip("fish-speech is not installed: `make setup-fish` installs it", allow_module_level=True)

#: Tokens per sentence (the random model rarely says stop, so streams run to it; the last is never heard).
TOKENS = 48
#: Long enough for pieces past LEFT_CONTEXT_FRAMES, decoded with truncated context.
LONG_TOKENS = 200
FRAME = 2048  # samples per codec frame (44.1 kHz)
TEXTS = ("Hello from LockN.", "A second sentence, rather longer than the first one.", "Third!")
#: Spoken in a cloned voice: its prompt (the clip's 259 frames first) outgrows the cache the others needed.
CLONE = "Cloned words."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fish_tiny import make_tiny_checkpoint

    folder = tmp_path_factory.mktemp("fish-serving")
    make_tiny_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def engine(checkpoint: Path):
    """A greedy engine (always the likeliest token) that decodes up to four streams together."""
    import torch

    from workers.engines.fish_speech import FishSpeechEngine

    torch.set_num_threads(1)
    fish = FishSpeechEngine(checkpoint, device="cpu", max_new_tokens=TOKENS, max_streams=4, greedy=True)
    fish.load()
    return fish


def fresh_decoder(base, tokens: int = TOKENS):  # type: ignore[no-untyped-def]
    """A decoder of its own (an empty cache) over `base`'s model, driven step by step by the test (no batcher
    thread)."""
    from workers.engines.fish_stream import FishStreamDecoder

    return FishStreamDecoder(base.model, base.codec, base.references, tokens, base.sampling)


@pytest.fixture
def decoder(engine):
    return fresh_decoder(engine.decoder)


def request(text: str):  # type: ignore[no-untyped-def]
    """A plain request for `text`; `CLONE` is a request in a cloned voice (a 12 s clip and its transcript)."""
    from workers.engines.fish_stream import FishRequest

    if text != CLONE:
        return FishRequest(text)
    from fish_speech.utils.schema import ServeReferenceAudio

    from tests.test_fish_speech import reference_clip
    from workers.engines import fish_compat

    clip = fish_compat.wav_bytes(reference_clip(44100, seconds=12), 44100)
    return FishRequest(text, (ServeReferenceAudio(audio=clip, text="The reference talks for twelve seconds."),))


def package_codes(engine, text: str, tokens: int = TOKENS, top_p: float = 1e-6):  # type: ignore[no-untyped-def]
    """The codes fish-speech's own `generate_long` makes for `text` on the engine's model; by default greedy (a
    top-p so small that only the likeliest token is left)."""
    import torch

    from fish_speech.models.text2semantic.inference import decode_one_token_ar, generate_long

    model = engine.decoder.model
    with torch.device("cpu"):
        model.setup_caches(max_batch_size=1, max_seq_len=model.config.max_seq_len, dtype=torch.float32)
    (codes,) = [r.codes for r in generate_long(
        model=model, device="cpu", decode_one_token=decode_one_token_ar, text=text, max_new_tokens=tokens,
        top_p=top_p, temperature=0.7, repetition_penalty=1.1, prompt_text=[], prompt_tokens=[]) if r.action == "sample"]
    return codes


def package_decode(engine, codes) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The package's one-shot decode of `codes` [C, n] (`VQManager.decode_vq_tokens`, as its engine runs it)."""
    import torch

    from workers.engines import fish_compat

    with torch.inference_mode():
        return fish_compat.reference_loader(engine.codec, torch.float32).decode_vq_tokens(codes).float().numpy()


def assert_joins_to(joined: np.ndarray, whole: np.ndarray) -> float:
    """Streamed pieces against one decode of all frames. The codec is causal with a 128-frame attention window,
    and every piece is decoded with 136 frames before it: the same samples to float rounding, asserted as
    1e-4 of full scale per sample (measured on the tiny checkpoint: about 1e-7). → the largest difference."""
    assert joined.shape == whole.shape
    worst = float(np.abs(joined - whole).max())
    assert worst < 1e-4
    return worst


def test_the_decode_loop_gives_the_package_s_own_codes(engine, decoder) -> None:
    for text in TEXTS:
        expected = package_codes(engine, text)
        stream = decoder.prefill(request(text))
        pieces = run_to_end(decoder, [stream])[stream]
        assert stream.codes().shape == expected.shape == (10, TOKENS - 1), "the last token is never heard"
        assert np.array_equal(stream.codes().numpy(), expected.numpy()), text
        assert_joins_to(np.concatenate(pieces), package_decode(engine, expected))


def test_sampling_follows_the_package_s_rules(engine) -> None:
    """Sampled, not greedy: from the same seed the loop draws the very codes the package draws (repetition
    penalty, top-p 0.8, temperature 0.7, the random numbers taken in the same order)."""
    import torch

    from workers.engines.fish_stream import FishSampling, FishStreamDecoder

    base = engine.decoder
    decoder = FishStreamDecoder(base.model, base.codec, base.references, TOKENS, FishSampling(0.7, 0.8, 1.1))
    for text in TEXTS[:2]:
        torch.manual_seed(7)
        expected = package_codes(engine, text, top_p=0.8)
        torch.manual_seed(7)
        stream = decoder.prefill(request(text))
        run_to_end(decoder, [stream])
        assert np.array_equal(stream.codes().numpy(), expected.numpy()), text


def test_three_streams_together_give_the_same_codes_as_each_alone(decoder) -> None:
    texts = (*TEXTS, CLONE)
    alone = []
    for text in texts:
        stream = decoder.prefill(request(text))
        run_to_end(decoder, [stream])
        alone.append(stream.codes().clone())
    together = [decoder.prefill(request(text)) for text in TEXTS]
    run_to_end(decoder, together)
    for stream, codes in zip(together, alone):
        assert np.array_equal(stream.codes().numpy(), codes.numpy())
    # Continuous batching: streams join at steps 5, 11 and 20 while the first is mid-way; rows are handed back
    # and moved as streams end, and the clone's long prompt makes the cache grow under the others.
    fresh = fresh_decoder(decoder)
    first = fresh.prefill(request(TEXTS[0]))
    pieces = run_to_end(fresh, [first], joining={5: TEXTS[1], 11: TEXTS[2], 20: CLONE},
                        start=lambda text: fresh.prefill(request(text)))
    assert fresh._cache[0][0].shape[2] > 256, "the cache grew while streams were in it"
    for stream, codes in zip(pieces, alone):
        assert np.array_equal(stream.codes().numpy(), codes.numpy())


def test_streams_arriving_together_are_prefilled_in_one_pass_as_each_alone(decoder) -> None:
    """`prefill_many`: prompts of different lengths (a clone's 259-frame clip among them) through the slow
    transformer in one pass, padded on the right; each stream then makes the codes it makes alone. A prompt
    the model refuses is that request's own error, in its place."""
    texts = (*TEXTS, CLONE)
    alone = {}
    for text in texts:
        stream = decoder.prefill(request(text))
        run_to_end(decoder, [stream])
        alone[text] = stream.codes().clone()
    passes = []
    slow = decoder._slow
    decoder._slow = lambda inputs, *rest: (passes.append(tuple(inputs.shape)), slow(inputs, *rest))[1]
    started = decoder.prefill_many([request(TEXTS[0]), request("x" * 3000), request(CLONE), request(TEXTS[1])])
    del decoder._slow
    assert len(passes) == 1 and passes[0][0] == 3, "one pass, three prompts"
    assert isinstance(started[1], ValueError) and "Prompt is too long" in str(started[1])
    streams = [started[0], started[2], started[3]]
    assert [stream.row for stream in streams] == [0, 1, 2]
    run_to_end(decoder, streams)
    for stream, text in zip(streams, (TEXTS[0], CLONE, TEXTS[1])):
        assert np.array_equal(stream.codes().numpy(), alone[text].numpy()), text
    assert decoder._rows == []


def test_the_batcher_prefills_the_requests_waiting_together(engine) -> None:
    """Three requests queued while the batcher is busy are admitted in one `prefill_many`, and each is heard as
    alone."""
    batcher, decoder = engine.batcher, engine.decoder
    alone = {text: np.concatenate(list(engine.synthesize(text, "fish-default"))) for text in TEXTS}
    gate, calls = threading.Event(), []
    prefill_many = decoder.prefill_many
    decoder.prefill_many = lambda requests: (calls.append(len(requests)), prefill_many(requests))[1]
    busy = threading.Thread(target=batcher.call, args=(gate.wait,))
    busy.start()
    try:
        streams = {text: engine.synthesize(text, "fish-default") for text in TEXTS}
        heard: dict = {}
        readers = [threading.Thread(target=lambda t=text: heard.setdefault(t, np.concatenate(list(streams[t]))))
                   for text in TEXTS]
        for reader in readers:
            reader.start()
        while batcher._pending.qsize() < len(TEXTS):
            gate.wait(0.01)
        gate.set()
        for reader in readers:
            reader.join(timeout=300)
    finally:
        gate.set()
        busy.join(timeout=60)
        del decoder.prefill_many
    assert calls == [3], "the three waiting requests were prefilled together"
    for text in TEXTS:
        assert np.allclose(heard[text], alone[text], atol=1e-5), text


def test_streamed_pieces_join_to_the_one_shot_decode(engine) -> None:
    """Every piece is decoded with up to 136 frames before it; joined, they are the package's one decode of all."""
    from workers.engines.fish_stream import CHUNK_FRAMES, FIRST_CHUNK_FRAMES, LEFT_CONTEXT_FRAMES

    decoder = fresh_decoder(engine.decoder, LONG_TOKENS)
    stream = decoder.prefill(request(TEXTS[1]))
    pieces = run_to_end(decoder, [stream])[stream]
    assert LONG_TOKENS - 1 > LEFT_CONTEXT_FRAMES + CHUNK_FRAMES, "some pieces had their context cut"
    assert [piece.size // FRAME for piece in pieces[:2]] == [FIRST_CHUNK_FRAMES, CHUNK_FRAMES]
    whole = package_decode(engine, stream.codes())
    assert whole.shape == ((LONG_TOKENS - 1) * FRAME,)
    assert np.array_equal(whole, decoder.decode_all(stream))
    worst = assert_joins_to(np.concatenate(pieces), whole)
    print(f"streamed vs one-shot: {len(pieces)} pieces, largest difference {worst:.2e} "
          f"(peak {np.abs(whole).max():.2f})")


def test_cancelling_one_of_three_streams_leaves_the_others_finishing(engine) -> None:
    assert_cancelling_one_leaves_the_others(engine, engine.batcher, "fish-default", TEXTS)
    assert engine.decoder._rows == [], "its cache row was handed back"


def test_a_request_the_engine_refuses_fails_alone(engine) -> None:
    """One stream's bad input (a prompt longer than the model takes) fails that stream, with the engine's
    message; a stream beside it speaks on."""
    results: dict = {}
    good = threading.Thread(
        target=lambda: results.setdefault("good", list(engine.synthesize(TEXTS[0], "fish-default"))))
    good.start()
    with pytest.raises(RuntimeError, match="Fish Speech failed: Prompt is too long"):
        list(engine.synthesize("x" * 3000, "fish-default"))
    good.join(timeout=300)
    assert np.concatenate(results["good"]).size > 0


# ----- through the real queue --------------------------------------------------------------------------


def test_a_gpu_worker_runs_four_fish_jobs_at_once(checkpoint: Path, embedded_broker, database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """LOCKN_GPU_MAX_STREAMS=4: four Fish jobs at once on one worker, one model decoding them together."""
    run_four_jobs_on_one_gpu_worker("fish", "fish-default", checkpoint_settings("FISH", checkpoint), monkeypatch)


# ----- at S1-mini's own layout ----------------------------------------------------------------------------------


def test_an_engine_on_a_card_that_holds_fewer_rows_says_so(engine, checkpoint: Path, monkeypatch) -> None:
    """Asked for 8 streams on a card whose free memory holds two rows of the cache (within the share it may
    take): the engine decodes two together and describes itself so (what the worker's heartbeat, the status
    card and /health show)."""
    from workers.engines import fish_stream, row_cache
    from workers.engines.fish_speech import FishSpeechEngine

    assert (engine.describe().streams, engine.describe().streams_asked) == (4, 4)
    row = engine.decoder.row_bytes(engine.decoder._cache[0][0].shape[2])
    monkeypatch.setattr(fish_stream, "free_device_bytes", lambda device: int(3 * row / row_cache.CACHE_SHARE))
    fish = FishSpeechEngine(checkpoint, device="cpu", max_new_tokens=TOKENS, max_streams=8, greedy=True)
    fish.load()
    assert fish.batcher.max_streams == 2
    assert (fish.describe().streams, fish.describe().streams_asked) == (2, 8)


@pytest.fixture(scope="module")
def s1_layout_engine(tmp_path_factory: pytest.TempPathFactory):
    """A greedy engine over a checkpoint with OpenAudio S1-mini's layout (`bench/full_size.py`: 16 query heads
    over 8 key/value heads of 128, query/key norms, scaled codebook embeddings, an untied output, its fast
    transformer's 16 over 8 heads of 64) but two slow and two fast layers and the tiny vocabulary: the paths the
    tiny checkpoint (4 over 4 heads, none of those options) never takes, checked before a GPU lease runs them."""
    from bench.full_size import FISH_S1_MINI
    from tests.fish_tiny import make_tiny_checkpoint
    from workers.engines.fish_speech import FishSpeechEngine

    layout = {**FISH_S1_MINI, "n_layer": 2, "n_fast_layer": 2, "max_seq_len": 4096}
    del layout["vocab_size"]
    folder = tmp_path_factory.mktemp("fish-s1-layout")
    make_tiny_checkpoint(folder, layout)
    fish = FishSpeechEngine(folder, device="cpu", max_new_tokens=24, max_streams=4, greedy=True)
    fish.load()
    attention = fish.decoder.model.layers[0].attention
    assert (attention.n_head, attention.n_local_heads, attention.head_dim) == (16, 8, 128)
    assert attention.attention_qk_norm and fish.decoder.config.scale_codebook_embeddings
    return fish


def test_s1_mini_s_layout_decodes_the_package_s_codes_alone_and_together(s1_layout_engine,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Grouped heads read by `one_token_attention` per row, query/key norms, scaled embeddings: each stream alone
    makes the package's own greedy codes, and three prefilled together and stepped together make the same."""
    from workers.engines import fish_stream

    grouped: set = set()
    original = fish_stream.one_token_attention

    def noting(query, keys, *rest):  # type: ignore[no-untyped-def]
        grouped.add((query.shape[1], keys.shape[1]))
        return original(query, keys, *rest)

    monkeypatch.setattr(fish_stream, "one_token_attention", noting)
    decoder = fresh_decoder(s1_layout_engine.decoder, 24)
    expected = {text: package_codes(s1_layout_engine, text, tokens=24) for text in TEXTS}
    for text in TEXTS:
        stream = decoder.prefill(request(text))
        run_to_end(decoder, [stream])
        assert np.array_equal(stream.codes().numpy(), expected[text].numpy()), text
    together = decoder.prefill_many([request(text) for text in TEXTS])
    run_to_end(decoder, together)
    for stream, text in zip(together, TEXTS):
        assert np.array_equal(stream.codes().numpy(), expected[text].numpy()), text
    assert grouped == {(16, 8)}, "every frame step's attention: 16 query heads over 8 key/value heads"


def test_a_main_token_past_the_semantic_block_does_not_stop_the_stream(tmp_path: Path) -> None:
    """Random weights at S1-mini's size have 155,776 output ids and a 4,367-token tokenizer: most main tokens
    they draw lie past the semantic block, which the package's `a[a < 0] = 0` leaves past the codebook
    embeddings (found running `bench.full_size`'s S1-mini checkpoint on the CPU: IndexError; on a GPU a
    device-side assert that ends the bench's CUDA context). Such a frame reads codebook 0's last code, and the
    stream goes on to its end."""
    from tests.fish_tiny import make_tiny_checkpoint, special_tokens
    from workers.engines.fish_speech import FishSpeechEngine

    tokens = 256 + len(special_tokens())
    make_tiny_checkpoint(tmp_path, {"vocab_size": tokens + 20_000, "tie_word_embeddings": False})
    fish = FishSpeechEngine(tmp_path, device="cpu", max_new_tokens=TOKENS, greedy=True)
    fish.load()
    decoder = fresh_decoder(fish.decoder)
    stream = decoder.prefill(request(TEXTS[0]))
    pieces = run_to_end(decoder, [stream])[stream]
    mains = stream.tokens[0, :stream.made]
    assert int(mains.max()) > decoder.model.tokenizer.semantic_end_id, "the case the test is about was drawn"
    assert stream.codes().shape == (10, TOKENS - 1) and int(stream.codes()[0].max()) < decoder.config.codebook_size
    audio = np.concatenate(pieces)
    assert audio.size == (TOKENS - 1) * FRAME and np.isfinite(audio).all()
