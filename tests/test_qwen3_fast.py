"""Qwen3-TTS's per-frame work without HF `generate` (`workers/engines/qwen3_fast.py`), on the CPU with a tiny
random checkpoint (`tests/qwen_tiny.py`, two layers deep here):

- LockN's code-predictor loop gives every per-group head the logits `code_predictor.generate` gives it, and draws
  the very codebooks it draws: greedy, and sampled under the same seed (the same random numbers as its
  `torch.multinomial`);
- the talker's fixed-capacity cache (a row per stream, each at its own positions) gives the codes of the
  package's own `generate`, alone and for streams that join, leave and rejoin the batch at different steps;
- the frame step compiles whole (fullgraph, dynamic=False; `aot_eager` stands in for inductor on the CPU): one
  graph per bucket of rows, built at warm-up and never rebuilt, with the eager step's codes (and one per bucket
  and span of cache columns where the step attends over a span); and a step that cannot compile falls back to
  eager with one log line;
- at the 1.7B model's own head layout (16 over 8 heads of 128, M-RoPE [24, 20, 20]; two layers), the package's
  codes alone and together.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("qwen_tts") is None:
    if os.environ.get("LOCKN_REQUIRE_QWEN") == "1":
        raise RuntimeError("LOCKN_REQUIRE_QWEN=1 but qwen-tts is not installed: run `make setup-qwen`")
    pytest.skip("qwen-tts is not installed: `make setup-qwen` installs it", allow_module_level=True)

from tests.gpu_serving import record_step_shapes  # noqa: E402

FRAMES = 24
#: Two layers in the talker and in the code predictor (the shared tiny checkpoint has one): each layer must find
#: its own keys and values in the caches, and the predictor's two-token prefill must be causal for its second
#: layer to see what `generate`'s does.
LAYERS = {"talker": {"num_hidden_layers": 2, "code_predictor_config": {"num_hidden_layers": 2}}}
TEXTS = ("Hello from LockN.", "A second sentence, rather longer than the first one.", "Third!")


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import torch

    from tests.qwen_tiny import make_tiny_qwen_checkpoint
    from workers.engines.qwen3 import _import_qwen_tts

    torch.set_num_threads(1)
    folder = make_tiny_qwen_checkpoint(tmp_path_factory.mktemp("qwen-fast"), "custom_voice", layout=LAYERS)
    wrapper = _import_qwen_tts().from_pretrained(str(folder), dtype=torch.float32, device_map="cpu")
    assert len(wrapper.model.talker.model.layers) == len(wrapper.model.talker.code_predictor.model.layers) == 2
    return wrapper


def predictor_inputs(wrapper):  # type: ignore[no-untyped-def]
    """Three different rows of what the talker hands its code predictor: a last hidden state and the
    embedding of the frame's codebook-0 token, each [3, 1, D]."""
    import torch

    talker = wrapper.model.talker
    generator = torch.Generator().manual_seed(7)
    past_hidden = torch.randn((3, 1, talker.config.hidden_size), generator=generator)
    tokens = torch.tensor([[5], [900], [2047]])
    return past_hidden, talker.get_input_embeddings()(tokens)


def head_outputs(predictor, run):  # type: ignore[no-untyped-def]
    """What `run()` returns, and the last position's logits each of the predictor's per-group heads gave
    [B, V] (transformers' `generate` runs a head over every position of its prefill; only the last is drawn from)."""
    seen: list = []
    hooks = [head.register_forward_hook(lambda _module, _inputs, output: seen.append(output[:, -1] if output.dim()
                                                                                      == 3 else output))
             for head in predictor.lm_head]
    try:
        return run(), seen
    finally:
        for hook in hooks:
            hook.remove()


def generate_codes(predictor, past_hidden, token_hidden, draw):  # type: ignore[no-untyped-def]
    """The package's call: `code_predictor.generate` over [past hidden, codebook-0 embedding]."""
    import torch

    return predictor.generate(inputs_embeds=torch.cat((past_hidden, token_hidden), dim=1),
                              max_new_tokens=predictor.config.num_code_groups - 1, do_sample=draw.do_sample,
                              top_p=draw.top_p, top_k=draw.top_k, temperature=draw.temperature,
                              output_hidden_states=True, return_dict_in_generate=True).sequences


def assert_same_heads(ours: list, theirs: list) -> None:
    """Every head's logits as `generate` computed them (float rounding aside: a step that saw other columns,
    or a prefill that was not causal, is off by ~1e-3 here)."""
    import torch

    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert torch.allclose(mine, reference, atol=1e-5, rtol=0), (mine - reference).abs().max()


@pytest.mark.parametrize("draw", [(False, 1.0, 1, 1.0), (True, 0.9, 50, 1.0), (True, 0.7, 0, 0.8),
                                  (True, 1.3, 20, 0.9)],
                         ids=["greedy", "package-defaults", "top-p", "top-k-and-top-p"])
def test_the_code_predictor_loop_draws_what_generate_draws(wrapper, draw) -> None:
    """Same logits from every head, and under one seed the same codes."""
    import torch

    from workers.engines.qwen3_fast import CodePredictorLoop, Draw

    settings = Draw(*draw)
    predictor = wrapper.model.talker.code_predictor
    past_hidden, token_hidden = predictor_inputs(wrapper)
    with torch.inference_mode():
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            expected, their_heads = head_outputs(
                predictor, lambda: generate_codes(predictor, past_hidden, token_hidden, settings))
            torch.manual_seed(seed)
            ours, our_heads = head_outputs(predictor,
                                           lambda: CodePredictorLoop(predictor, settings)(past_hidden, token_hidden))
            assert ours.shape == expected.shape == (3, predictor.config.num_code_groups - 1)
            assert torch.equal(ours, expected), (seed, ours, expected)
            assert_same_heads(our_heads, their_heads)
    if not settings.do_sample:
        assert len({tuple(row) for row in expected.tolist()}) == 3, "three different rows"


def test_the_loop_with_eager_attention_spells_out_the_causal_prefill(wrapper) -> None:
    """With transformers' eager attention (no implicit causality) the two-token prefill gets its causal mask
    from the loop (without it, the second layer reads a first position that saw the second: every head's
    logits move), and the codes and logits still match `generate`'s (which builds the same mask itself)."""
    import torch

    from workers.engines.qwen3_fast import CodePredictorLoop, Draw

    greedy = Draw(False, 1.0, 1, 1.0)
    predictor = wrapper.model.talker.code_predictor
    past_hidden, token_hidden = predictor_inputs(wrapper)
    predictor.set_attn_implementation("eager")
    try:
        loop = CodePredictorLoop(predictor, greedy)
        assert loop.eager
        with torch.inference_mode():
            expected, their_heads = head_outputs(
                predictor, lambda: generate_codes(predictor, past_hidden, token_hidden, greedy))
            ours, our_heads = head_outputs(predictor, lambda: loop(past_hidden, token_hidden))
        assert torch.equal(ours, expected)
        assert_same_heads(our_heads, their_heads)
    finally:
        predictor.set_attn_implementation("sdpa")
    assert predictor.config._attn_implementation == "sdpa"


def test_sampling_keeps_to_the_top_k_and_top_p_set() -> None:
    """Whatever is drawn lies among the k likeliest tokens and inside the smallest set holding top-p of the
    probability (with temperature applied first, as transformers does)."""
    import torch

    from workers.engines.qwen3_fast import Draw, sample_tokens

    torch.manual_seed(3)
    logits = torch.randn((4, 300)) * 3
    draw = Draw(True, 0.8, 10, 0.7)
    probs = (logits / draw.temperature).softmax(dim=-1)
    top_k = torch.topk(logits, draw.top_k, dim=-1).indices
    for _ in range(200):
        tokens = sample_tokens(logits, draw)
        for row, token in enumerate(tokens.tolist()):
            assert token in top_k[row].tolist()
            ordered = probs[row].sort(descending=True).values
            assert probs[row, token] >= ordered[int((ordered.cumsum(0) < draw.top_p).sum())] - 1e-7


# ----- the talker's rows ----------------------------------------------------------------------------------------


def request(wrapper, text: str):  # type: ignore[no-untyped-def]
    from workers.engines.qwen3_stream import QwenRequest

    return QwenRequest(generate=lambda: wrapper.generate_custom_voice(text=text, speaker="aiden", language="Auto",
                                                                     max_new_tokens=FRAMES + 1))


def greedy_decoder(wrapper, max_streams: int = 1):  # type: ignore[no-untyped-def]
    from workers.engines.qwen3_stream import Qwen3StreamDecoder

    return Qwen3StreamDecoder(wrapper, FRAMES + 1, greedy=True, max_streams=max_streams)


@pytest.fixture(scope="module")
def package_codes(wrapper) -> list:  # type: ignore[no-untyped-def]
    """Each text's codes [FRAMES, Q] from the package's own greedy `generate` (taken on their way to its
    codec), the reference every decode here is held to."""
    return generated_codes(wrapper)


def generated_codes(wrapper) -> list:  # type: ignore[no-untyped-def]
    """`package_codes` for any loaded model."""
    codes: list = []
    tokenizer = wrapper.model.speech_tokenizer
    real = tokenizer.decode
    tokenizer.decode = lambda encoded: (codes.append(encoded[0]["audio_codes"].numpy()), real(encoded))[1]
    try:
        for text in TEXTS:
            wrapper.generate_custom_voice(text=text, speaker="aiden", language="Auto", max_new_tokens=FRAMES + 1,
                                          do_sample=False, subtalker_dosample=False)
    finally:
        del tokenizer.decode
    assert [c.shape for c in codes] == [(FRAMES, 4)] * len(TEXTS)
    return codes


def step_joining(decoder, joining: dict, leaving: dict | None = None) -> set:  # type: ignore[no-untyped-def]
    """Step until every stream is done: `joining` {step: stream} enters the batch at that step, `leaving`
    {step: stream} is released there unfinished (cancelled, as the batcher does); → the rows the batch's streams
    held at each step."""
    joining, leaving = dict(joining), dict(leaving or {})
    active: list = []
    step, rows_seen = 0, set()
    while active or joining:
        if step in joining:
            active.append(joining.pop(step))
        if step in leaving:
            gone = leaving.pop(step)
            active.remove(gone)
            decoder.release(gone)
        rows_seen.add(tuple(stream.row for stream in active))
        for stream, (_, finished) in zip(list(active), decoder.step(active)):
            if finished:
                active.remove(stream)
        step += 1
    return rows_seen


def test_each_stream_alone_makes_the_package_s_codes(wrapper, package_codes) -> None:
    decoder = greedy_decoder(wrapper)
    for text, codes in zip(TEXTS, package_codes):
        stream = decoder.prefill(request(wrapper, text))
        while not decoder.step([stream])[0][1]:
            pass
        assert np.array_equal(stream.codes().numpy(), codes), text


def test_the_talker_step_reads_its_cache_without_copying_it_per_head(wrapper, package_codes,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched step's attention (one token per row, under the rows' mask) goes through
    `one_token_attention` (the talker's 2 query heads over its 1 key/value head, no `repeat_kv` copy); the prefill
    and the code predictor keep transformers' sdpa; the codes are the package's."""
    import workers.engines.qwen3_fast as fast

    seen: list = []
    original = fast.one_token_attention

    def counting(query, keys, *args):  # type: ignore[no-untyped-def]
        seen.append((tuple(query.shape), tuple(keys.shape)))
        return original(query, keys, *args)

    monkeypatch.setattr(fast, "one_token_attention", counting)
    decoder = greedy_decoder(wrapper)
    talker = wrapper.model.talker.config
    assert talker._attn_implementation == fast.ROW_ATTENTION
    assert talker.code_predictor_config._attn_implementation == "sdpa"
    stream = decoder.prefill(request(wrapper, TEXTS[0]))
    assert seen == [], "the prompt is read by sdpa"
    while not decoder.step([stream])[0][1]:
        pass
    assert np.array_equal(stream.codes().numpy(), package_codes[0])
    assert len(seen) == 2 * FRAMES, "each of the talker's two layers, every frame"
    assert {shape for shape, _ in seen} == {(1, 2, 1, 16)} and {keys[:3] for _, keys in seen} == {(1, 1, 512)}


def test_streams_that_join_leave_and_rejoin_rows_keep_their_codes(wrapper, package_codes) -> None:
    """Three streams join at steps 0, 3 and 7 (buckets 1, 2, 4: a dummy row past the third); the first is
    released at step 10 (the last row moves into its row) and a fourth joins into the freed place at step 12.
    Each of the three finishers makes the codes it makes alone; the cancelled one, a prefix of its own."""
    expected = package_codes
    decoder = greedy_decoder(wrapper)
    streams = [decoder.prefill(request(wrapper, text)) for text in (*TEXTS, TEXTS[0])]
    rows_seen = step_joining(decoder, {0: streams[0], 3: streams[1], 7: streams[2], 12: streams[3]},
                             leaving={10: streams[0]})
    assert (1, 0) in rows_seen, "the last row moved into the released one"
    assert (1, 0, 2) in rows_seen, "the fourth stream joined after them"
    assert decoder.cache.rows == 4
    rows = decoder.cache
    held = [tensor for layer in rows.layers for tensor in layer] + [getattr(rows, name) for name in rows._state_shapes]
    assert rows.row_bytes() * 4 == sum(tensor.nbytes for tensor in held), \
        "what a GPU's free memory is held against is what the rows take"
    cut = streams[0].codes().numpy()
    assert cut.shape[0] == 10 and np.array_equal(cut, expected[0][:10])
    for stream, codes in zip(streams[1:], (expected[1], expected[2], expected[0])):
        assert np.array_equal(stream.codes().numpy(), codes)


def test_pieces_due_together_are_decoded_in_one_call_as_each_alone(wrapper) -> None:
    """Audio pieces of several streams due in the same step go through the tokenizer's decoder in one batched
    call (windows of different widths padded on the right, which its causal layers never see): each piece is
    what decoding that stream's window alone gives. Three streams of different lengths, pieces with and without
    left context."""
    decoder = greedy_decoder(wrapper, max_streams=3)
    streams = [decoder.prefill(request(wrapper, text)) for text in TEXTS]
    active = list(streams)
    while active:
        for stream, (_, finished) in zip(list(active), decoder.step(active)):
            if finished:
                active.remove(stream)
    wanted = [(streams[0], 0, 2), (streams[1], 10, 18), (streams[2], 14, 24)]
    together = decoder.decode_pieces(wanted)
    assert len(together) == 3
    for stream, start, end in wanted:
        alone = decoder.decode_pieces([(stream, start, end)])[stream]
        assert together[stream].shape == alone.shape == ((end - start) * decoder.upsample,)
        assert np.allclose(together[stream], alone, atol=1e-6), float(np.abs(together[stream] - alone).max())


# ----- the compiled step -----------------------------------------------------------------------------------------


def counting_backend(graphs: list):  # type: ignore[no-untyped-def]
    """torch.compile's `aot_eager` backend (the CPU stand-in for inductor: same tracing, no kernels), noting
    each graph it is handed: a graph per bucket, and none more, is what 'no recompiles' means."""
    from torch._dynamo.backends.registry import lookup_backend

    def backend(graph, example_inputs):  # type: ignore[no-untyped-def]
        graphs.append(graph)
        return lookup_backend("aot_eager")(graph, example_inputs)

    return backend


def test_the_compiled_step_is_one_graph_per_bucket_and_gives_the_same_codes(wrapper, package_codes) -> None:
    """fullgraph=True, dynamic=False: the warm-up (the first prefill) builds buckets 1, 2 and 4 for three
    streams; three streams joining at different steps then run 24 frames each (more than 20 in bucket 1 alone)
    without another graph, and make exactly the eager codes."""
    import torch

    expected = package_codes
    graphs: list = []
    decoder = greedy_decoder(wrapper, max_streams=3)
    decoder.use_step("compiled", counting_backend(graphs), None)
    first = decoder.prefill(request(wrapper, TEXTS[0]))
    assert len(graphs) == 3, "one graph for each of the buckets 1, 2 and 4, built at the first prefill"
    assert decoder.cache.rows == 4
    streams = [first] + [decoder.prefill(request(wrapper, text)) for text in TEXTS[1:]]
    previous = torch._dynamo.config.error_on_recompile
    torch._dynamo.config.error_on_recompile = True
    try:
        step_joining(decoder, {0: streams[0], 21: streams[1], 22: streams[2]})
    finally:
        torch._dynamo.config.error_on_recompile = previous
    assert decoder.frame_step.failure is None, decoder.frame_step.failure
    assert len(graphs) == 3, "no graph was built after the warm-up"
    for stream, codes in zip(streams, expected):
        assert np.array_equal(stream.codes().numpy(), codes)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_streams_cross_spans_of_cache_columns(wrapper, package_codes, compiled: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The talker attends over the columns its rows have written, rounded up to a span (here from 16 columns,
    so these short prompts cross several as they grow): three streams joining late make the package's codes,
    and compiled, each (bucket, span) stepped is one graph, built once."""
    decoder = greedy_decoder(wrapper, max_streams=3)
    streams = [decoder.prefill(request(wrapper, text)) for text in TEXTS]  # eager: nothing built at warm-up
    graphs: list = []
    if compiled:
        decoder.use_step("compiled", counting_backend(graphs), None)
    decoder.frame_step.smallest_span = 16
    shapes = record_step_shapes(monkeypatch)
    step_joining(decoder, {0: streams[0], 3: streams[1], 7: streams[2]})
    for stream, codes in zip(streams, package_codes):
        assert np.array_equal(stream.codes().numpy(), codes)
    spans = [span for _, span in shapes]
    assert len(set(spans)) >= 2 and max(spans) < decoder.cache.capacity, spans
    if compiled:
        assert decoder.frame_step.failure is None, decoder.frame_step.failure
        assert len(graphs) == len(set(shapes)), "a graph per (rows, span)"


def test_the_compiled_step_samples_as_the_eager_one(wrapper) -> None:
    """The package's own sampling (its generate_config: temperature, top-k, repetition penalty, and the sub-talker
    sampler) traces into the same single graph, and under one seed draws the eager step's very tokens."""
    import torch

    from workers.engines.qwen3_stream import Qwen3StreamDecoder

    def sampled(compiled: bool):  # type: ignore[no-untyped-def]
        decoder = Qwen3StreamDecoder(wrapper, FRAMES + 1)
        if compiled:
            decoder.use_step("compiled", counting_backend(graphs), None)
            decoder.prefill(request(wrapper, TEXTS[0]))  # the warm-up (its draws use the generator)
        torch.manual_seed(11)
        stream = decoder.prefill(request(wrapper, TEXTS[1]))
        while not decoder.step([stream])[0][1]:
            pass
        assert not compiled or decoder.frame_step.failure is None
        return stream.codes()

    graphs: list = []
    assert wrapper.generate_defaults["do_sample"] and wrapper.generate_defaults["subtalker_dosample"]
    assert torch.equal(sampled(compiled=True), sampled(compiled=False))
    assert len(graphs) == 1


def test_a_step_that_cannot_compile_falls_back_to_eager(wrapper, package_codes,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A backend that refuses the graph: one log line, and the stream decodes eagerly with the same codes."""
    def refusing(graph, example_inputs):  # type: ignore[no-untyped-def]
        raise RuntimeError("this backend compiles nothing")

    decoder = greedy_decoder(wrapper)
    decoder.use_step("compiled", refusing, None)
    with caplog.at_level("WARNING", logger="workers.engines.fast_step"):
        stream = decoder.prefill(request(wrapper, TEXTS[2]))
        while not decoder.step([stream])[0][1]:
            pass
    assert decoder.frame_step.failure is not None
    assert [r.message for r in caplog.records if "decoding eagerly" in r.message] != []
    assert len([r for r in caplog.records if r.name == "workers.engines.fast_step"]) == 1
    assert np.array_equal(stream.codes().numpy(), package_codes[2])


def test_the_warm_up_speaks_through_each_model(tmp_path: Path) -> None:
    """A worker's warm-up (what builds a compiled decoder's graphs) reaches the Base model too, through a voice
    cloned from faint noise: the first cloned voice a listener asks for waits for no compile."""
    from tests.qwen_tiny import make_tiny_qwen_checkpoint
    from workers.engines.qwen3 import Qwen3Engine

    folders = {kind: make_tiny_qwen_checkpoint(tmp_path / kind, kind) for kind in ("custom_voice", "base")}
    engine = Qwen3Engine(folders["custom_voice"], folders["base"], device="cpu", max_new_tokens=4, step="eager")
    engine.load()
    assert all(batcher.decoder.sampling is None for batcher in engine.batchers.values())
    engine.warm_up()
    assert {kind: batcher.decoder.sampling is not None for kind, batcher in engine.batchers.items()} == \
        {"custom_voice": True, "base": True}


# ----- at the 1.7B model's own layout ---------------------------------------------------------------------------


def test_the_1_7b_layout_decodes_the_package_s_codes_alone_and_together(tmp_path: Path) -> None:
    """The released 1.7B CustomVoice layout (`bench/full_size.py`: a 2048-wide talker with 16 query heads over 8
    key/value heads of 128 and M-RoPE sections [24, 20, 20]; a 1024-wide code predictor, 16 over 8) with two layers
    of each and the tiny vocabularies, tokenizer and 4 code groups: each stream alone, and three decoded together, make the
    package's own greedy codes (the real head shapes through `row_attention`, before a GPU lease runs them)."""
    import torch

    from bench.full_size import QWEN_LAYOUTS
    from tests.qwen_tiny import make_tiny_qwen_checkpoint
    from workers.engines.qwen3 import _import_qwen_tts
    from workers.engines.qwen3_fast import ROW_ATTENTION

    tiny = {"num_code_groups": 4}  # the tiny tokenizer's quantizers
    talker = {key: value for key, value in QWEN_LAYOUTS["1.7b"]["talker"].items() if key != "text_vocab_size"}
    talker.update(num_hidden_layers=2, **tiny,
                  code_predictor_config={**talker["code_predictor_config"], "num_hidden_layers": 2, **tiny})
    folder = make_tiny_qwen_checkpoint(tmp_path / "qwen-1.7b-layout", "custom_voice", layout={"talker": talker})
    wrapper = _import_qwen_tts().from_pretrained(str(folder), dtype=torch.float32, device_map="cpu")
    attention = wrapper.model.talker.model.layers[0].self_attn
    assert (attention.config.num_attention_heads, attention.config.num_key_value_heads, attention.head_dim) == \
        (16, 8, 128)
    expected = generated_codes(wrapper)
    decoder = greedy_decoder(wrapper, max_streams=3)
    assert wrapper.model.talker.config._attn_implementation == ROW_ATTENTION
    for text, codes in zip(TEXTS, expected):
        stream = decoder.prefill(request(wrapper, text))
        step_joining(decoder, {0: stream})
        assert np.array_equal(stream.codes().numpy(), codes), text
    streams = [decoder.prefill(request(wrapper, text)) for text in TEXTS]
    step_joining(decoder, {0: streams[0], 2: streams[1], 5: streams[2]})
    for stream, codes in zip(streams, expected):
        assert np.array_equal(stream.codes().numpy(), codes)
