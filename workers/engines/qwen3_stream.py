"""Qwen3-TTS decoded a frame at a time, many streams together, audio released every few frames.

The package's own `generate` runs one batch from start to end and returns audio only when the longest request is
done. This decoder keeps the package's prompt (the exact talker input it builds for a preset speaker, an
instruction or a clone prompt) and its sampling rules, and runs the talker loop itself so that
`StreamBatcher` can add and remove streams between frames:

- `prefill`: the package builds the talker's input embeddings (we stop it right before its `talker.generate`),
  the talker reads them into a cache of the stream's own, and the first codebook-0 token is drawn;
- `step`: for every active stream at once, the code predictor completes the current frame (15 more codebooks,
  LockN's own loop: `qwen3_fast.CodePredictorLoop`), the frame's embedding plus the next text embedding goes
  through the talker in one batched step over a fixed-capacity key/value cache with a row per stream
  (`qwen3_fast.TalkerRows`), and each stream draws its next codebook-0 token (repetition penalty, suppressed
  control tokens, no end in the first two frames: the package's rules). The step's shapes depend only on the
  bucket of rows (1, 2, 4, 8 …), so one frame of a bucket is one fixed graph (`use_step`: a CUDA graph per
  bucket, `fast_step`); one device sync per step reads the frames back;
- audio: the 12 Hz tokenizer's decoder is causal, so a few new frames decoded with `LEFT_CONTEXT_FRAMES` frames
  before them give the samples of those frames (the package's own `chunked_decode` does the same with 300-frame
  chunks). First audio leaves after `FIRST_CHUNK_FRAMES` frames (0.16 s of speech), later chunks as long as the
  audio already out, from `CHUNK_FRAMES` to `LARGEST_CHUNK_FRAMES` (`ChunkSchedule`).

Streams that join are prefilled into caches of their own (those arriving together in one pass of the talker,
`prefill_many`), each copied into a free row of the batch's at its first step (each row keeps its own positions; a
per-row mask hides the columns it has not written); a stream that leaves frees its row, which
the last row moves into. Greedy decoding (the tests) gives every stream the same codes together as alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.engines.fast_step import FastStep
from workers.engines.qwen3_fast import (
    MAX_PROMPT_TOKENS, ROW_ATTENTION, CodePredictorLoop, Draw, TalkerRows, sample_tokens, talker_step,
    use_row_attention,
)
from workers.engines.row_cache import (
    fit_streams, free_device_bytes, free_row, round_up, row_bucket, row_buckets, span_bucket,
)
from workers.engines.stream_audio import ChunkSchedule
from workers.engines.stream_batcher import prefill_each, prefill_one


#: Frames of audio before the first chunk leaves (12.5 frames per second: 0.16 s); later chunks take as many frames
#: as were heard before them, from 8 (0.64 s) up to 32 (2.6 s).
FIRST_CHUNK_FRAMES = 2
CHUNK_FRAMES = 8
LARGEST_CHUNK_FRAMES = 32
#: Frames decoded before each chunk as context and then dropped (the package's `chunked_decode` uses 25).
LEFT_CONTEXT_FRAMES = 25
SCHEDULE = ChunkSchedule(FIRST_CHUNK_FRAMES, CHUNK_FRAMES, LEFT_CONTEXT_FRAMES, LARGEST_CHUNK_FRAMES)


class _PromptCaptured(Exception):
    """Raised by the stand-in for `talker.generate`: the package has built the prompt; we take it from here."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("prompt captured")
        self.kwargs = kwargs


@dataclass(frozen=True)
class QwenRequest:
    """What one stream says. `generate` calls one of the package's `generate_*` methods (its prompt is taken
    and the call stopped before decoding); `context` gives the codes [n, Q] decoded before the stream's audio (a
    clone's reference codes) or None. Both run on the batcher's thread, which alone touches the model."""

    generate: Callable[[], Any]
    context: Callable[[], Any] = lambda: None


@dataclass(eq=False)
class QwenStream:
    """One stream: its prefill (until it joins the batch), its row there, and the frames and audio made so far."""

    prefilled: Any  # (own key/value cache, last hidden [1, D], first token [1], drawn tokens [V]) until it joins
    length: int  # the prompt's tokens (the first frame's position)
    trailing: Any  # text embeddings still to be read, one per frame [1, T, D]
    pad_embed: Any  # what is read once the text is used up [1, 1, D]
    max_frames: int
    context: Any  # codes [Q, n] decoded before this stream's first frame (a clone's reference), or None
    row: int | None = None  # its row in the batch's `TalkerRows` while it is in the batch
    frames: list = field(default_factory=list)  # [Q] code tensors, one per finished frame
    firsts: list = field(default_factory=list)  # each frame's codebook-0 token, read back with the frame
    decoded_frames: int = 0  # frames already turned into audio

    @property
    def position(self) -> int:
        """The talker's next position for this stream (prompt + frames read)."""
        return self.length + len(self.frames)

    def codes(self) -> Any:
        """All of this stream's frames as [n, Q] (what the package's `generate` returns for it)."""
        import torch

        return torch.stack(self.frames) if self.frames else None


@dataclass(frozen=True)
class Sampling:
    """The package's sampling settings (from the checkpoint's generate_config.json, or its defaults)."""

    do_sample: bool
    top_k: int
    top_p: float
    temperature: float
    repetition_penalty: float
    subtalker_dosample: bool
    subtalker_top_k: int
    subtalker_top_p: float
    subtalker_temperature: float

    @classmethod
    def of(cls, kwargs: dict[str, Any]) -> Sampling:
        return cls(**{name: kwargs[name] for name in cls.__dataclass_fields__})


class Qwen3StreamDecoder:
    """`StreamDecoder` for one loaded `Qwen3TTSModel` (the package's wrapper). Requests are callables that run
    one of the wrapper's `generate_*` methods (see `Qwen3Engine`); everything here runs on the batcher's thread."""

    def __init__(self, wrapper: Any, max_frames: int, greedy: bool = False, max_streams: int = 1) -> None:
        """`max_frames`: the most frames a stream makes; `greedy`: always the likeliest token (tests);
        `max_streams`: the streams decoded together at most (the compiled step is warmed for their buckets)."""
        import torch

        self.torch = torch
        self.wrapper = wrapper
        self.model = wrapper.model  # Qwen3TTSForConditionalGeneration
        self.talker = self.model.talker
        self.config = self.model.config.talker_config
        self.max_frames, self.greedy = max_frames, greedy
        self.device = self.talker.device
        self.eos = int(self.config.codec_eos_token_id)
        self.groups = int(self.config.num_code_groups)
        self.vocab = int(self.talker.codec_head.out_features)
        self._decoder = self.model.speech_tokenizer.model.decoder
        self.upsample = int(self._decoder.total_upsample)
        _check_attention(self.config)
        use_row_attention(self.config)
        self._rows: list[QwenStream] = []  # the streams in the batch, by row (rows 0…n-1)
        #: Every row's cache and state; its width: the longest prompt allowed and the most frames (one more
        #: column is written by a finished stream's last, unheard step).
        self.cache = TalkerRows(self.talker.model, round_up(MAX_PROMPT_TOKENS + max_frames + 1, 256), self.vocab,
                                self.talker.dtype, self.device)
        free = free_device_bytes(self.device)
        #: The streams decoded together: `max_streams`, or fewer where the GPU cannot hold their rows.
        self.max_streams = fit_streams("Qwen3-TTS", max_streams, self.cache.row_bytes(), free)
        if free is not None:  # taken now, so that a model loaded next sees what is left
            with torch.inference_mode():  # where a warm-up would make it, and where the steps write it
                self.cache.reserve(self.max_streams)
        self.sampling: Sampling | None = None
        self._predictor: CodePredictorLoop | None = None  # made with the sampling settings (first prefill)
        self._blocked: Any = None  # [V] bool: the tokens the package never lets the talker draw
        self._draw: Draw | None = None
        #: The frame step as it runs for a bucket of rows (`use_step`).
        self.frame_step = FastStep(self._frame, "eager", "Qwen3-TTS")

    def use_step(self, mode: str, backend: Any = "inductor", compile_mode: str | None = "reduce-overhead") -> None:
        """Run the frame step as `mode` (`fast_step.FastStep`: graphs, compiled or eager), built for every bucket
        of rows when the first prompt arrives (see `_warm`)."""
        self.frame_step = FastStep(self._frame, mode, "Qwen3-TTS", backend, compile_mode)

    def capture_prompt(self, run_generate: Callable[[], Any]) -> dict[str, Any]:
        """The talker inputs the package builds when `run_generate` calls one of its `generate_*` methods."""
        original = self.talker.generate

        def capture(**kwargs: Any) -> Any:
            raise _PromptCaptured(kwargs)

        self.talker.generate = capture
        try:
            run_generate()
        except _PromptCaptured as captured:
            return captured.kwargs
        finally:
            self.talker.generate = original
        raise RuntimeError("the Qwen3-TTS package never reached its talker")

    def prefill(self, request: QwenRequest) -> QwenStream:
        """Start a stream: the prompt through the talker (into a cache of its own), the first token drawn."""
        return prefill_one(self, request)

    def prefill_many(self, requests: Sequence[QwenRequest]) -> list[QwenStream | Exception]:
        """Start several streams with one pass of the talker over all their prompts and one draw of their first
        tokens (requests arriving together wait for one prefill, not one each). A request whose prompt cannot be
        built fails alone: its entry is the exception. No device sync: the tokens stay on the device until the
        streams' first step."""
        with self.torch.inference_mode():
            return prefill_each(requests, self._take_prompt, self._start)

    def _start(self, taken: list[tuple[Any, dict[str, Any]]]) -> list[QwenStream]:
        """A stream for each (context, prompt), its prompt through the talker with the others'."""
        states = self._prefill_prompts([prompt for _, prompt in taken])
        streams = []
        for (context, prompt), state in zip(taken, states):
            max_frames = min(self.max_frames, int(prompt.get("max_new_tokens") or self.max_frames) - 1)
            streams.append(QwenStream(
                prefilled=state, length=int(prompt["inputs_embeds"].shape[1]), trailing=prompt["trailing_text_hidden"],
                pad_embed=prompt["tts_pad_embed"], max_frames=max(1, max_frames),
                context=None if context is None else context.T))
        return streams

    def _take_prompt(self, request: QwenRequest) -> tuple[Any, dict[str, Any]]:
        """The request's context codes (or None) and the talker inputs the package builds for it; the first
        prompt sets the sampling (and, unless eager, builds the frame steps)."""
        context = request.context()
        prompt = self.capture_prompt(request.generate)
        self._remember_sampling(prompt)
        length = int(prompt["inputs_embeds"].shape[1])
        if length > MAX_PROMPT_TOKENS:
            raise ValueError(f"Qwen3-TTS prompt too long: {length} tokens (at most {MAX_PROMPT_TOKENS})")
        return context, prompt

    def _prefill_prompts(self, prompts: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
        """Each prompt through the talker in one pass, padded on the right to the longest (a prompt's causal
        attention never reaches its padding), and its first token drawn; → per prompt what its stream joins the
        batch with: its own key/value cache (per layer [1, H, L, D]), last hidden state [1, D], token [1] and
        drawn tokens [V]."""
        torch = self.torch
        lengths = [int(prompt["inputs_embeds"].shape[1]) for prompt in prompts]
        longest, first = max(lengths), prompts[0]["inputs_embeds"]
        embeds = torch.zeros((len(prompts), longest, first.shape[2]), dtype=first.dtype, device=self.device)
        mask = torch.ones((len(prompts), longest), dtype=torch.long, device=self.device)
        for index, (prompt, length) in enumerate(zip(prompts, lengths)):
            embeds[index, :length] = prompt["inputs_embeds"][0]
            if prompt["attention_mask"] is not None:
                mask[index, :length] = prompt["attention_mask"][0]
        positions = torch.arange(longest, device=self.device).view(1, 1, -1).expand(3, len(prompts), -1)
        out = self.talker.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                use_cache=True, cache_position=torch.arange(longest, device=self.device))
        rows = torch.arange(len(prompts), device=self.device)
        hidden = out.last_hidden_state[rows, torch.tensor(lengths, device=self.device) - 1]
        seen = torch.zeros((len(prompts), self.vocab), dtype=torch.bool, device=self.device)
        tokens = self._choose(self.talker.codec_head(hidden), seen,
                              torch.zeros(len(prompts), dtype=torch.long, device=self.device))
        seen[rows, tokens] = True
        legacy = out.past_key_values.to_legacy_cache()
        return [(tuple((keys[index:index + 1, :, :length], values[index:index + 1, :, :length])
                       for keys, values in legacy), hidden[index:index + 1], tokens[index:index + 1], seen[index])
                for index, length in enumerate(lengths)]

    def _remember_sampling(self, prompt: dict[str, Any]) -> None:
        if self.sampling is not None:
            return
        sampling = Sampling.of(prompt)
        if self.greedy:
            sampling = Sampling(False, 1, 1.0, 1.0, sampling.repetition_penalty, False, 1, 1.0, 1.0)
        self.sampling = sampling
        self._draw = Draw(sampling.do_sample, sampling.temperature, sampling.top_k, sampling.top_p)
        self._predictor = CodePredictorLoop(self.talker.code_predictor, Draw(
            sampling.subtalker_dosample, sampling.subtalker_temperature, sampling.subtalker_top_k,
            sampling.subtalker_top_p))
        blocked = self.torch.zeros(self.vocab, dtype=self.torch.bool, device=self.device)
        blocked[list(prompt.get("suppress_tokens") or [])] = True
        self._blocked = blocked
        self._warm()

    def _warm(self) -> None:
        """Unless eager, build every bucket's step now, on dummy rows: the first prompt has just set the sampling
        the graphs hold, no stream is in the batch yet, and this runs within the engine's warm-up sentence (the
        worker still says "warming"). The cache takes its full size here, so it never moves."""
        if self.frame_step.mode == "eager":
            return
        self.cache.reserve(self.max_streams)
        self.frame_step.warm(self.dummy_step_inputs, row_buckets(self.max_streams), self.spans())

    def spans(self) -> list[int]:
        """The spans of the talker cache's columns the frame step attends over (`FastStep.spans`)."""
        return self.frame_step.spans(self.cache.capacity)

    def dummy_step_inputs(self, bucket: int, span: int) -> tuple:
        """A step's inputs for `bucket` rows that hold no stream (position 0, token 0, zero states), attending over
        `span` columns (what the warm-up builds and `bench.frame_steps` times); only while no stream is in the
        batch (the rows' states would be read as theirs), and once the first prompt has set the sampling."""
        if self._rows or self._predictor is None:
            raise RuntimeError("dummy steps run after the first prompt and before any stream joins the batch")
        if self.cache.reserve(bucket):
            self.frame_step.forget_graphs()
        cache = self.cache
        texts = self.torch.zeros((bucket, cache.hidden.shape[1]), dtype=cache.hidden.dtype, device=self.device)
        return (cache.tokens[:bucket], cache.hidden[:bucket], texts, cache.positions[:bucket], cache.seen[:bucket],
                cache.drawn[:bucket], span)

    # ----- one frame for every stream ---------------------------------------------------------------------------

    def step(self, streams: Sequence[QwenStream]) -> list[tuple[list[np.ndarray], bool]]:
        torch = self.torch
        with torch.inference_mode():
            self._align(streams)
            live, bucket = len(self._rows), row_bucket(len(self._rows))
            span = span_bucket(max(stream.position for stream in self._rows) + 1, self.spans())
            cache = self.cache
            frames, hidden, tokens = self.frame_step(
                cache.tokens[:bucket], cache.hidden[:bucket], self._texts(bucket), cache.positions[:bucket],
                cache.seen[:bucket], cache.drawn[:bucket], span)
            cache.advance(live, tokens, hidden)
            read = torch.cat((frames[:live], tokens[:live, None]), dim=1).tolist()  # the step's one sync
            ended = []
            for stream in streams:
                row = read[stream.row]
                stream.frames.append(frames[stream.row])
                stream.firsts.append(row[0])
                # The next token drawn ends the stream (the package stops there: its end frame is never made),
                # as does its frame limit.
                ended.append(row[-1] == self.eos or len(stream.frames) >= stream.max_frames)
            return list(zip(self._audio(streams, ended), ended))

    def _texts(self, bucket: int) -> Any:
        """What each row reads with its frame [bucket, D]: the next text embedding, or the pad once the text is
        used up (zeros for the dummy rows)."""
        texts = [s.trailing[0, len(s.frames)] if len(s.frames) < s.trailing.shape[1] else s.pad_embed[0, 0]
                 for s in self._rows]
        texts += [self.torch.zeros_like(texts[0])] * (bucket - len(texts))
        return self.torch.stack(texts)

    def _frame(self, tokens: Any, past_hidden: Any, texts: Any, positions: Any, seen: Any, drawn: Any, span: int
               ) -> tuple[Any, Any, Any]:
        """One frame for rows 0…b-1 (all shapes [b, …], fixed per bucket and span): the code predictor completes
        each row's frame from its token [b] and the talker's last hidden state [b, D]; the frame's embeddings
        (summed as the package sums them) plus the row's text embedding [b, D] go through the talker at
        `positions` [b], attending within its first `span` columns;
        the next token is drawn with the penalty's memory `seen` [b, V] and the count `drawn` [b].
        → frames [b, Q], the talker's new hidden states [b, D], the next tokens [b]. The one function
        `use_step` hands to `FastStep`."""
        torch = self.torch
        token_hidden = self.talker.get_input_embeddings()(tokens.unsqueeze(1))
        codes = self._predictor(past_hidden.unsqueeze(1), token_hidden)
        embeddings = self.talker.code_predictor.get_input_embeddings()
        parts = [token_hidden] + [embeddings[i](codes[:, i:i + 1]) for i in range(self.groups - 1)]
        inputs = torch.cat(parts, dim=1).sum(1, keepdim=True) + texts.unsqueeze(1)
        hidden = talker_step(self.talker.model, self.cache, inputs, positions, span)[:, -1]
        following = self._choose(self.talker.codec_head(hidden), seen, drawn)
        return torch.cat((tokens.unsqueeze(1), codes), dim=1), hidden, following

    def _choose(self, logits: Any, seen: Any, drawn: Any) -> Any:
        """The next codebook-0 token per row by the package's rules (transformers' processors, in its order):
        repetition penalty over `seen` [B, V], no end before two tokens (`drawn` [B]), suppressed control
        tokens, then the sampler. → [B]."""
        torch, sampling = self.torch, self.sampling
        logits = logits.float()
        if sampling.repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * sampling.repetition_penalty,
                                    logits / sampling.repetition_penalty)
            logits = torch.where(seen, penalised, logits)
        too_early = (drawn < 2).unsqueeze(1) & (torch.arange(self.vocab, device=logits.device) == self.eos)
        logits = logits.masked_fill(too_early | self._blocked, float("-inf"))
        return sample_tokens(logits, self._draw)

    # ----- the batch's rows --------------------------------------------------------------------------------------

    def _align(self, streams: Sequence[QwenStream]) -> None:
        """Make the batch's rows hold exactly `streams`: free the rows of those that left, give joiners one."""
        wanted = set(streams)
        for stream in [s for s in self._rows if s not in wanted]:
            self._free(stream)
        for stream in streams:
            if stream.row is None:
                self._join(stream)

    def _join(self, stream: QwenStream) -> None:
        if stream.prefilled is None:
            raise RuntimeError("a Qwen3-TTS stream rejoined the batch after leaving it")
        if self.cache.reserve(len(self._rows) + 1):
            self.frame_step.forget_graphs()
        stream.row = len(self._rows)
        self._rows.append(stream)
        legacy, hidden, token, seen = stream.prefilled
        self.cache.join(stream.row, legacy, token, hidden, seen, stream.length)
        stream.prefilled = None

    def _free(self, stream: QwenStream) -> None:
        """Take `stream`'s row back; the last row moves into it, so the live rows stay 0…n-1."""
        free_row(self._rows, stream, lambda source, target, moved: self.cache.move(source, target, moved.position + 1))

    def release(self, stream: QwenStream) -> None:
        """The stream left (finished, cancelled or failed): its row goes back at once."""
        self._free(stream)
        stream.prefilled = None

    # ----- audio ------------------------------------------------------------------------------------------------

    def _audio(self, streams: Sequence[QwenStream], ended: list[bool]) -> list[list[np.ndarray]]:
        """Each stream's piece of audio, if one is due (enough frames gathered, or the stream ended): all due
        pieces decoded in one batched call of the tokenizer's decoder."""
        due = [(stream, SCHEDULE.due(stream.decoded_frames, len(self._heard(stream)), finished))
               for stream, finished in zip(streams, ended)]
        pieces = self.decode_pieces([(stream, *span) for stream, span in due if span is not None])
        for stream, span in due:
            if span is not None:
                stream.decoded_frames = span[1]
        return [[pieces[stream]] if stream in pieces else [] for stream in streams]

    def _heard(self, stream: QwenStream) -> list:
        """The stream's frames a listener hears (an end token is never one; read from the frames' codebook-0
        tokens already on the host, so no device sync)."""
        return [frame for frame, first in zip(stream.frames, stream.firsts) if first != self.eos]

    def decode_pieces(self, wanted: list[tuple[QwenStream, int, int]]) -> dict[QwenStream, np.ndarray]:
        """Samples of frames `start:end` of each stream, each decoded with up to `LEFT_CONTEXT_FRAMES` frames
        before it (a clone's reference codes first, as the package decodes them), all in one call of the causal
        decoder: shorter windows padded on the right, which no earlier sample sees."""
        if not wanted:
            return {}
        torch = self.torch
        windows = [self._window(stream, start, end) for stream, start, end in wanted]
        width = max(codes.shape[1] for codes, _ in windows)
        batch = torch.zeros((len(windows), self.groups, width), dtype=windows[0][0].dtype, device=self.device)
        for index, (codes, _) in enumerate(windows):
            batch[index, :, :codes.shape[1]] = codes
        with torch.inference_mode():
            wav = self._decoder(batch.clamp(min=0))[:, 0].float().cpu().numpy().astype(np.float32)
        return {stream: wav[index, skip * self.upsample:(skip + end - start) * self.upsample]
                for index, ((stream, start, end), (_, skip)) in enumerate(zip(wanted, windows))}

    def _window(self, stream: QwenStream, start: int, end: int) -> tuple[Any, int]:
        """The codes [Q, w] to decode for the stream's heard frames `start:end`, its left context first, and how
        many of them are context (their samples are dropped)."""
        codes = self.torch.stack(self._heard(stream)[:end]).T  # [Q, n]
        if stream.context is not None:
            codes = self.torch.cat((stream.context.to(codes.device), codes), dim=1)
            start, end = start + stream.context.shape[1], end + stream.context.shape[1]
        begin = SCHEDULE.window(start)
        return codes[:, begin:end], start - begin

    def decode_all(self, stream: QwenStream) -> np.ndarray:
        """The stream's frames decoded in one pass, as the package does (the reference streamed chunks are held to)."""
        codes = self.torch.stack(self._heard(stream))  # [n, Q]
        wavs, _ = self.model.speech_tokenizer.decode([{"audio_codes": codes}])
        return np.asarray(wavs[0], dtype=np.float32)


def _check_attention(config: Any) -> None:
    """The batched talker step hands the attention an additive per-row mask over every column and ignores
    sliding windows: right for transformers' sdpa and eager attention (and LockN's `row_attention`, sdpa's
    stand-in) over full-attention layers (what LockN loads), wrong for flash-attention's padding masks; refuse
    rather than decode wrong codes."""
    implementation = config._attn_implementation
    if implementation not in ("sdpa", "eager", ROW_ATTENTION) or getattr(config, "sliding_window", None) is not None:
        raise ValueError(f"Qwen3-TTS streaming needs sdpa or eager full attention (found {implementation}, "
                         f"sliding window {getattr(config, 'sliding_window', None)})")
