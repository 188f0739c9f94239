"""Fish Speech (DualAR) decoded a frame at a time, many streams together, audio released every few frames.

fish-speech's own loop (`text2semantic.inference.generate`) serves one request at a time from one static cache
and hands back codes only once a sentence is done. This decoder keeps the package's prompt and sampling and runs
the loop itself so that `StreamBatcher` can add and remove streams between frames:

- `prefill`: the prompt is built by the package's own code (`ContentSequence`: the reference clips' transcripts
  and codes, the codec having encoded each clip through the package's `ReferenceLoader`, then the text), read by
  the slow transformer into the stream's row of the batch's key/value cache, and the first frame is drawn;
- `step`: every active stream's newest frame goes through the slow transformer in one batched forward, each row
  at its own position (per-row rotary positions and a per-row attention mask over a cache with a row per stream,
  so no padding shifts anyone's positions), then the fast transformer draws the frame's codebooks for all rows
  at once. Sampling is the package's (`decode_one_token_ar`): repetition penalty over its 16-frame window
  (quirks kept: the main token is penalised with the window's first column of every codebook, and the first
  frame is left out of the window), top-p, temperature, all three rounded to bfloat16 as the package does;
  `greedy` takes the likeliest token after the penalty (the package's own loop with a vanishing top-p);
- a stream ends on `<|im_end|>` or at its `max_new_tokens` (clipped to the model's `max_seq_len` as the
  package does); its final token is never heard, as in the package (the end token, or the frame the limit cut).

Fixed shapes (what CUDA graphs need: `workers/engines/fast_step.py` records one per bucket): the cache is
allocated once, its capacity enough for the longest prompt the package takes plus `max_new_tokens`, its rows a
power of two (grown, rarely, only if a request or a batch ever needs more). The frame step always runs over a
whole bucket of rows (1, 2, 4, 8, …: `row_bucket`), the rows past the live ones reading a harmless frame at
position 0 of their own free row (their output thrown away), and attends with a per-row mask over a span of the
cache's columns (`span_bucket`: the columns its rows have written, rounded up to 512, 1,024, … or the capacity). So
within a (bucket, span) its inputs never change shape, and inside it nothing syncs with the host or branches on a
value.

Audio: the codec's decoder (modded DAC) is causal throughout: its codes-rate transformer attends to at most
`window_size` (128) frames back, and every convolution after it is left-padded (`CausalConvNet`,
`CausalTransConvNet` trimmed on the right). A piece decoded with `LEFT_CONTEXT_FRAMES` = 128 + 8 frames before it
therefore gets the very samples one decode of all frames gives, up to float rounding (the tests hold joined
pieces to 1e-4 of full scale, per sample, against the package's one-shot decode). Pieces due in the same step are
decoded in one batched call, shorter ones padded on the right (which a causal decoder never sees). The first piece
leaves after `FIRST_CHUNK_FRAMES` frames (0.19 s of speech at 21.5 frames/s), later ones as long as the audio
already out, from `CHUNK_FRAMES` to `LARGEST_CHUNK_FRAMES` (`ChunkSchedule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.engines.fast_step import FastStep
from workers.engines.row_cache import (
    fit_streams, free_device_bytes, free_row, mark_static, one_token_attention, round_up, row_bucket, span_bucket,
    visible_columns, write_rows,
)
from workers.engines.stream_audio import ChunkSchedule
from workers.engines.stream_batcher import prefill_each, prefill_one

#: Frames before the first piece leaves (21.5 frames per second: 0.19 s); later pieces take as many frames as were
#: heard before them, from 16 (0.74 s) up to 64 (3 s).
FIRST_CHUNK_FRAMES = 4
CHUNK_FRAMES = 16
LARGEST_CHUNK_FRAMES = 64
#: The codec transformer's attention window (128 frames) plus the reach of the convolutions after it.
LEFT_CONTEXT_FRAMES = 136
SCHEDULE = ChunkSchedule(FIRST_CHUNK_FRAMES, CHUNK_FRAMES, LEFT_CONTEXT_FRAMES, LARGEST_CHUNK_FRAMES)
#: The package's repetition-penalty window (`decode_n_tokens`: the last 16 frames).
PENALTY_WINDOW = 16
#: The package draws codebooks 1… from the first 1024 of the fast transformer's logits (`decode_one_token_ar`).
RESIDUAL_CODES = 1024
#: The package refuses prompts longer than `max_seq_len` minus this (`generate_long`).
PROMPT_MARGIN = 2048
#: Cache capacities are whole multiples of this.
CAPACITY_STEP = 256


@dataclass(frozen=True)
class FishRequest:
    """What one stream says: `text`, in the voice of `references` (fish-speech `ServeReferenceAudio`s: a clip's
    WAV bytes and its transcript; none for the model's own voice)."""

    text: str
    references: tuple = ()


@dataclass(frozen=True)
class FishSampling:
    """The package's sampling settings; `greedy`: always the likeliest token (the tests)."""

    temperature: float = 0.7
    top_p: float = 0.8
    repetition_penalty: float = 1.1
    greedy: bool = False


@dataclass(eq=False)
class FishStream:
    """One stream's place in the batch: its cache row, what the slow transformer has read, the frames so far."""

    row: int | None  # its row in the batch's key/value cache (None once it holds none)
    length: int  # tokens the slow transformer has read for this stream (its next position)
    limit: int  # frames it may make (the package's max_new_tokens, clipped to the model's max_seq_len)
    tokens: Any  # [1 + C, limit + PENALTY_WINDOW] int: every frame made, column by column (zeros after)
    made: int = 1  # frames made (the first comes from the prefill)
    finished: bool = False
    decoded_frames: int = 0  # frames already turned into audio

    @property
    def last(self) -> Any:
        """The newest frame [1 + C] (what the slow transformer reads next)."""
        return self.tokens[:, self.made - 1]

    def heard(self) -> int:
        """Frames whose audio a listener hears so far: all but a finished stream's final token."""
        return self.made - 1 if self.finished else self.made

    def codes(self) -> Any:
        """The heard frames' codebooks [C, n] (what the package's `generate_long` hands its codec)."""
        return self.tokens[1:, :self.heard()]

    def window(self) -> Any:
        """The package's repetition-penalty window [1 + C, 16]: the frames after the first, the last 16 of them
        (the first 16 columns, zeros included, until there are 16)."""
        drawn = self.made - 1  # frames the package's `decode_n_tokens` has made
        start = 1 + max(0, drawn - PENALTY_WINDOW)
        return self.tokens[:, start:start + PENALTY_WINDOW]


class FishStreamDecoder:
    """`StreamDecoder` for one loaded `DualARTransformer` and its codec. `references` turns a request's clips
    into prompt codes and transcripts (the package's `ReferenceLoader.load_by_hash`); everything here runs on
    the batcher's thread. `max_streams`: the streams decoded together (the cache's rows are allocated for them
    up front, so that its address never changes under a recorded CUDA graph)."""

    def __init__(self, model: Any, codec: Any, references: Callable[[list], tuple[list, list]],
                 max_new_tokens: int, sampling: FishSampling = FishSampling(), precision: Any = None,
                 max_streams: int = 1) -> None:
        import torch

        from fish_speech.tokenizer import IM_END_TOKEN

        self.torch = torch
        self.model, self.codec, self.references = model, codec, references
        self.config = model.config
        self.max_new_tokens, self.sampling = max_new_tokens, sampling
        self.precision = precision or next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.end_token = int(model.tokenizer.get_token_id(IM_END_TOKEN))
        self.frame_samples = int(codec.frame_length)
        # As `generate` does: the settings as bfloat16 tensors, so the arithmetic (and rounding) is the package's.
        self._temperature, self._top_p, self._penalty = (
            torch.tensor(value, device=self.device, dtype=torch.bfloat16)
            for value in (sampling.temperature, sampling.top_p, sampling.repetition_penalty))
        for setting in (self._temperature, self._top_p, self._penalty):  # never change: no copy into a CUDA graph
            mark_static(setting)
        self._rows: list[FishStream] = []  # the cache's rows, in order
        self._cache: list[tuple[Any, Any]] = []  # per slow layer: keys, values [rows, heads, capacity, head_dim]
        prompts = self.config.max_seq_len - PROMPT_MARGIN  # the longest prompt `encode` lets through
        capacity = round_up(min(self.config.max_seq_len, prompts + max_new_tokens), CAPACITY_STEP)
        #: The streams decoded together: `max_streams`, or fewer where the GPU cannot hold their cache rows.
        self.max_streams = fit_streams("Fish Speech", max_streams, self.row_bytes(capacity),
                                       free_device_bytes(self.device))
        with torch.inference_mode():  # made in inference mode: only there may it change
            self._grow(row_bucket(self.max_streams), capacity)
        #: The frame step as it runs (`use_step`): the slow transformer's step plus the codebooks' draws.
        self.frame_step = FastStep(self.eager_frame_step, "eager", "Fish Speech")

    def use_step(self, mode: str, backend: Any = "inductor", compile_mode: str | None = "reduce-overhead") -> None:
        """Run the frame step as `mode` (`fast_step.FastStep`: graphs, compiled or eager); compiled, attention is
        left to the math kernel, which Inductor fuses (as the package's own compiled loop does)."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self.frame_step = FastStep(self.eager_frame_step, mode, "Fish Speech", backend, compile_mode,
                                   context=lambda: sdpa_kernel(SDPBackend.MATH))

    # ----- prefill ---------------------------------------------------------------------------------------------

    def encode(self, request: FishRequest) -> Any:
        """The prompt [1 + C, T] the package's `generate_long` builds for `request` (references first)."""
        from fish_speech.content_sequence import ContentSequence, TextPart, VQPart

        codes, texts = self.references(list(request.references)) if request.references else ([], [])
        sequence = ContentSequence(modality="interleave")
        for text, clip_codes in zip(texts, codes):
            sequence.append([TextPart(text=text), VQPart(codes=clip_codes.cpu())], add_end=True, speaker=0)
        sequence.append([TextPart(text=request.text)], add_end=False, speaker=0)
        encoded, _audio_masks, audio_parts = sequence.encode_for_inference(
            self.model.tokenizer, num_codebooks=self.config.num_codebooks)
        if audio_parts is not None:
            raise ValueError("audio-feature prompts are not supported (Fish Speech's VQ prompts are)")
        if encoded.size(1) > self.config.max_seq_len - PROMPT_MARGIN:
            raise ValueError(f"Prompt is too long: {encoded.size(1)} > {self.config.max_seq_len - PROMPT_MARGIN}")
        return encoded.to(self.device)

    def prefill(self, request: FishRequest) -> FishStream:
        """Start a stream: the prompt through the slow transformer into a new cache row, the first frame drawn."""
        return prefill_one(self, request)

    def prefill_many(self, requests: Sequence[FishRequest]) -> list[FishStream | Exception]:
        """Start several streams with one pass of the slow transformer over all their prompts and one draw of
        their first frames (streams arriving together wait for one prefill, not one each). A request whose
        prompt cannot be built fails alone: its entry is the exception."""
        with self.torch.inference_mode():
            return prefill_each(requests, self.encode, self._start)

    def _start(self, prompts: list[Any]) -> list[FishStream]:
        """A stream for each prompt, in a cache row of its own, prefilled together; raising (the engine's fault)
        leaves no row held by a stream that never started."""
        streams: list[FishStream] = []
        try:
            for prompt in prompts:
                streams.append(self._new_stream(int(prompt.shape[1])))
            mains = self._prefill_rows(list(zip(streams, prompts)))
        except BaseException:
            for stream in streams:
                self._free_row(stream)
            raise
        for stream, main in zip(streams, mains):
            self._check_end(stream, main)
            if stream.finished:  # nothing to hear: it leaves at the next step without holding a row meanwhile
                self._free_row(stream)
        return streams

    def _new_stream(self, length: int) -> FishStream:
        """A stream for a prompt of `length` tokens, holding a cache row wide enough for it and its frames."""
        torch = self.torch
        limit = min(self.max_new_tokens, self.config.max_seq_len - length)
        stream = FishStream(row=None, length=length, limit=limit, tokens=torch.zeros(
            (self.config.num_codebooks + 1, limit + PENALTY_WINDOW), dtype=torch.int, device=self.device))
        self._take_row(stream, length + limit)
        return stream

    def _prefill_rows(self, started: list[tuple[FishStream, Any]]) -> list[int]:
        """Each stream's prompt [1 + C, L] into its cache row and its first frame drawn, all in one pass: the
        prompts padded on the right to the longest. A row's causal attention never reaches its padding, which
        lands in its own columns past its prompt, where its first frame is written before anything reads them.
        → each first frame's main token (one device sync)."""
        torch, model = self.torch, self.model
        longest = max(int(prompt.shape[1]) for _, prompt in started)
        inputs = torch.zeros((len(started), self.config.num_codebooks + 1, longest), dtype=started[0][1].dtype,
                             device=self.device)
        for index, (_, prompt) in enumerate(started):
            inputs[index, :, :prompt.shape[1]] = prompt
        rows = torch.tensor([stream.row for stream, _ in started], device=self.device)
        last = torch.tensor([stream.length - 1 for stream, _ in started], device=self.device)
        logits, hidden = self._slow(inputs, model.freqs_cis[:longest].unsqueeze(0),
                                    model.causal_mask[None, None, :longest, :longest],
                                    self._prefill_store(rows, longest), last)
        frames = self._codebooks(logits, hidden, windows=None)
        for (stream, _), frame in zip(started, frames):
            stream.tokens[:, 0] = frame
        return frames[:, 0].tolist()

    # ----- one frame for every stream ---------------------------------------------------------------------------

    def step(self, streams: Sequence[FishStream]) -> list[tuple[list[np.ndarray], bool]]:
        live = [stream for stream in streams if not stream.finished]
        if live:
            with self.torch.inference_mode():
                self._advance(live)
        return self._audio(streams)

    def _advance(self, streams: list[FishStream]) -> None:
        """Every live stream's newest frame through both transformers: each one's next frame."""
        ordered = sorted(streams, key=lambda stream: stream.row)
        if [stream.row for stream in ordered] != list(range(len(ordered))):
            raise RuntimeError("the batch's cache rows and its live streams disagree")
        span = span_bucket(max(stream.length for stream in ordered) + 1, self.spans())
        frames = self.frame_step(*self._step_inputs(ordered, row_bucket(len(ordered)), span))[:len(ordered)]
        for stream, frame, main in zip(ordered, frames, frames[:, 0].tolist()):  # one device sync per step
            stream.tokens[:, stream.made] = frame
            stream.made += 1
            stream.length += 1
            self._check_end(stream, main)

    def spans(self) -> list[int]:
        """The spans of cache columns the frame step attends over (`FastStep.spans`)."""
        return self.frame_step.spans(self._cache[0][0].shape[2])

    def _step_inputs(self, ordered: list[FishStream], size: int, span: int) -> tuple[Any, Any, Any, int]:
        """The frame step's inputs for the streams in rows 0…n-1, padded to `size` rows, attending over `span`
        columns: the rows past them (free ones) read an empty frame at position 0, which lands in their own row
        and which no one reads."""
        torch = self.torch
        inputs = torch.zeros((size, self.config.num_codebooks + 1, 1), dtype=torch.int, device=self.device)
        windows = torch.zeros((size, self.config.num_codebooks + 1, PENALTY_WINDOW), dtype=torch.int,
                              device=self.device)
        positions = [stream.length for stream in ordered] + [0] * (size - len(ordered))
        if ordered:
            inputs[:len(ordered), :, 0] = torch.stack([stream.last for stream in ordered])
            windows[:len(ordered)] = torch.stack([stream.window() for stream in ordered])
        return inputs, torch.tensor(positions, device=self.device), windows, span

    def eager_frame_step(self, inputs: Any, positions: Any, windows: Any, span: int) -> Any:
        """The batch's rows 0…n-1 read their newest frames `inputs` [n, 1 + C, 1], each at its own position
        (`positions` [n]), attending to its own cache columns only, all within the first `span`; → the next
        frames [n, 1 + C]. The one function `use_step` hands to `FastStep`: within a (bucket n, span) every shape
        is fixed, nothing syncs with the host."""
        freqs = self.model.freqs_cis[positions].unsqueeze(1)
        mask = visible_columns(positions, span)[:, None, None, :]
        logits, hidden = self._slow(inputs, freqs, mask,
                                    lambda index, keys, values: write_rows(self._cache[index], positions, keys,
                                                                           values, span))
        return self._codebooks(logits, hidden, windows)

    def warm_up(self, sizes: Sequence[int]) -> float:
        """Build the frame step for each bucket in `sizes` (`FastStep.warm`), every row a dummy one (so before any
        stream starts): graphs are recorded and compiled steps compiled here, not in the first requests. Run it on
        the thread that will decode (CUDA graph trees belong to it). → seconds taken."""
        with self.torch.inference_mode():
            if max(sizes) > self._cache[0][0].shape[0]:
                self._grow(max(sizes), self._cache[0][0].shape[2])
            return self.frame_step.warm(self.dummy_step_inputs, sizes, self.spans())

    def dummy_step_inputs(self, bucket: int, span: int) -> tuple[Any, Any, Any, int]:
        """The frame step's inputs for `bucket` rows that hold no stream, attending over `span` columns (what a
        warm-up builds and `bench.frame_steps` times); only while no stream is in the batch: every row reads at
        position 0, which it writes."""
        if self._rows:
            raise RuntimeError("dummy steps run before any stream starts: every row is written at position 0")
        return self._step_inputs([], bucket, span)

    def _check_end(self, stream: FishStream, main: int) -> None:
        """The package's stop: the end token drawn (`main`: the newest frame's main token), or the limit reached."""
        stream.finished = main == self.end_token or stream.made >= stream.limit

    # ----- the transformers --------------------------------------------------------------------------------------

    def _slow(self, inputs: Any, freqs: Any, mask: Any, store: Callable[[int, Any, Any], tuple[Any, Any]],
              last: Any = None) -> tuple[Any, Any]:
        """`DualARTransformer.forward_generate` over `inputs` [B, 1 + C, S] with rotary `freqs` [B or 1, S, …],
        attention `mask` and the cache kept by `store`; → the last token's logits [B, V] and its hidden state,
        projected for the fast transformer [B, fast_dim]; `last` [B]: each row's last token, where rows are
        padded (else the last position)."""
        torch, model = self.torch, self.model
        x = self._embed(inputs)
        for index, layer in enumerate(model.layers):
            x = _block(layer, x, freqs, mask, lambda k, v, i=index: store(i, k, v))
        x = x[:, -1:] if last is None else x[torch.arange(x.shape[0], device=x.device), last].unsqueeze(1)
        out = model.norm(x)
        logits = torch.nn.functional.linear(out, model.embeddings.weight) if self.config.tie_word_embeddings \
            else model.output(out)
        return logits[:, -1], model.fast_project_in(x)[:, -1]

    def _embed(self, inputs: Any) -> Any:
        """`BaseTransformer.forward_generate`'s embedding: the token plus, for semantic tokens, its codebooks."""
        torch, model, config = self.torch, self.model, self.config
        parts = [model.codebook_embeddings(inputs[:, i + 1] + i * config.codebook_size)
                 for i in range(config.num_codebooks)]
        codebooks = torch.stack(parts, dim=1).sum(dim=1)
        tokenizer = model.tokenizer
        semantic = (inputs[:, 0] >= tokenizer.semantic_begin_id) & (inputs[:, 0] <= tokenizer.semantic_end_id)
        codebooks = torch.where(semantic.unsqueeze(-1), codebooks, 0)  # no boolean-mask write: graph-safe
        x = model.embeddings(inputs[:, 0]) + codebooks
        if config.scale_codebook_embeddings:
            x = torch.where(semantic.unsqueeze(-1).expand_as(x), x / (config.num_codebooks + 1) ** 0.5, x)
        return x

    def _codebooks(self, logits: Any, hidden: Any, windows: Any) -> Any:
        """`decode_one_token_ar` for a batch: the main token from the slow logits [B, V], then codebooks 1…
        from the fast transformer fed `hidden` [B, fast_dim]. `windows` [B, 1 + C, 16]: the penalty's memory
        (None at the prefill, as in the package). → frames [B, 1 + C]."""
        torch, model = self.torch, self.model
        main = self._draw(logits, None if windows is None else windows[:, :, 0])
        shapes = [(hidden.shape[0], layer.attention.n_local_heads, self.config.num_codebooks, layer.attention.head_dim)
                  for layer in model.fast_layers]
        cache = [tuple(torch.zeros(shape, dtype=hidden.dtype, device=self.device) for _ in range(2))
                 for shape in shapes]
        self._fast(hidden, 0, cache)
        # The package clamps below only: a main token past the semantic block (random weights at full size draw
        # them: the vocabulary outgrows the tokenizer) would index past the codebook embeddings, on a GPU a
        # device-side assert that ends the process's CUDA context. A trained model never draws one.
        code = (main - model.tokenizer.semantic_begin_id).clamp(min=0, max=self.config.codebook_size - 1)
        frame = [main, code]
        for index in range(1, self.config.num_codebooks):
            fast_logits = self._fast(model.fast_embeddings(code), index, cache)
            code = self._draw(fast_logits[:, :RESIDUAL_CODES], None if windows is None else windows[:, index + 1])
            frame.append(code)
        return torch.stack(frame, dim=1)

    def _fast(self, x: Any, position: int, cache: list[tuple[Any, Any]]) -> Any:
        """`DualARTransformer.forward_generate_fast` for a batch: one codebook position, every row; → logits."""
        model = self.model
        x = x.view(x.shape[0], 1, -1)
        mask = model.causal_mask[None, None, position:position + 1, :self.config.num_codebooks]
        freqs = model.fast_freqs_cis[position:position + 1].unsqueeze(0)

        def store(index: int, keys: Any, values: Any) -> tuple[Any, Any]:
            cache[index][0][:, :, position] = keys[:, :, 0]
            cache[index][1][:, :, position] = values[:, :, 0]
            return cache[index]

        for index, layer in enumerate(model.fast_layers):
            x = _block(layer, x, freqs, mask, lambda k, v, i=index: store(i, k, v))
        return model.fast_output(model.fast_norm(x))[:, -1]

    # ----- sampling -----------------------------------------------------------------------------------------------

    def _draw(self, logits: Any, previous: Any) -> Any:
        """One token per row by the package's rules (`logits_to_probs` + `multinomial_sample_one_no_sync`)."""
        torch = self.torch
        if previous is not None:
            previous = previous.long()
            score = torch.gather(logits, dim=-1, index=previous)
            score = torch.where(score < 0, score * self._penalty, score / self._penalty)
            logits = logits.scatter(-1, previous, score)
        if self.sampling.greedy:
            return logits.argmax(dim=-1).to(torch.int)
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(torch.nn.functional.softmax(ordered, dim=-1), dim=-1)
        remove = cumulative > self._top_p
        remove[:, 0] = False  # keep at least one option
        logits = logits.masked_fill(remove.scatter(-1, order, remove), -float("Inf"))
        probs = torch.nn.functional.softmax(logits / torch.clip(self._temperature, min=1e-5), dim=-1)
        noise = torch.empty_like(probs).exponential_(1)
        return torch.argmax(probs / noise, dim=-1).to(torch.int)

    # ----- the batch's key/value cache -----------------------------------------------------------------------------

    def _take_row(self, stream: FishStream, length: int) -> None:
        """Give `stream` the next free row, growing the cache (rows or columns) when it is too small (never, when
        `max_streams` was right: the capacity fits any request)."""
        rows, capacity = self._cache[0][0].shape[0], self._cache[0][0].shape[2]
        if len(self._rows) >= rows or length > capacity:
            self._grow(max(rows, row_bucket(len(self._rows) + 1)), max(capacity, round_up(length, CAPACITY_STEP)))
        stream.row = len(self._rows)
        self._rows.append(stream)

    def row_bytes(self, capacity: int) -> int:
        """What one stream's row of the cache takes at `capacity` columns: keys and values of every slow layer."""
        return sum(2 * layer.attention.n_local_heads * capacity * layer.attention.head_dim * self.precision.itemsize
                   for layer in self.model.layers)

    def _grow(self, rows: int, capacity: int) -> None:
        """A cache of `rows` × `capacity`, holding what the old one held. Its tensors are marked static: CUDA
        graphs then read and write them in place rather than copying them in every step (a new cache means new
        recordings, hence allocating once)."""
        torch = self.torch
        grown = []
        for index, layer in enumerate(self.model.layers):
            shape = (rows, layer.attention.n_local_heads, capacity, layer.attention.head_dim)
            keys, values = (torch.zeros(shape, dtype=self.precision, device=self.device) for _ in range(2))
            if self._cache:
                old_keys, old_values = self._cache[index]
                keys[:old_keys.shape[0], :, :old_keys.shape[2]] = old_keys
                values[:old_values.shape[0], :, :old_values.shape[2]] = old_values
            mark_static(keys)
            mark_static(values)
            grown.append((keys, values))
        self._cache = grown
        if hasattr(self, "frame_step"):
            self.frame_step.forget_graphs()

    def _free_row(self, stream: FishStream) -> None:
        """Take `stream`'s row back; the last row moves into it, so the live rows stay 0…n-1."""
        free_row(self._rows, stream, self._move_row)

    def _move_row(self, source: int, target: int, moved: FishStream) -> None:
        """Row `source`'s written columns (`moved`'s so far; the rest of its row holds nothing of its own) into
        row `target`."""
        written = slice(0, moved.length)
        for keys, values in self._cache:
            keys[target, :, written], values[target, :, written] = keys[source, :, written], values[source, :, written]

    def release(self, stream: FishStream) -> None:
        self._free_row(stream)

    def _prefill_store(self, rows: Any, length: int) -> Callable[[int, Any, Any], tuple[Any, Any]]:
        """Prompts' keys and values [B, heads, length, d] into cache `rows` [B], columns 0…length-1."""
        def store(index: int, keys: Any, values: Any) -> tuple[Any, Any]:
            cache_keys, cache_values = self._cache[index]
            cache_keys[rows, :, :length] = keys
            cache_values[rows, :, :length] = values
            return keys, values

        return store

    # ----- audio ------------------------------------------------------------------------------------------------

    def _audio(self, streams: Sequence[FishStream]) -> list[tuple[list[np.ndarray], bool]]:
        """Each stream's due piece (if any), all decoded in one batched call of the codec, and whether it ended."""
        due = {stream: SCHEDULE.due(stream.decoded_frames, stream.heard(), stream.finished) for stream in streams}
        pieces = self.decode_pieces([(stream, *span) for stream, span in due.items() if span is not None])
        results = []
        for stream in streams:
            piece = pieces.get(stream)
            if piece is not None:
                stream.decoded_frames = due[stream][1]
            results.append(([piece] if piece is not None else [], stream.finished))
        return results

    def decode_pieces(self, wanted: list[tuple[FishStream, int, int]]) -> dict[FishStream, np.ndarray]:
        """Samples of frames `start:end` of each stream, decoded with up to `LEFT_CONTEXT_FRAMES` frames before
        them, all in one call (shorter windows padded on the right, which the causal decoder never sees)."""
        if not wanted:
            return {}
        torch = self.torch
        windows = [(stream, SCHEDULE.window(start), start, end) for stream, start, end in wanted]
        width = max(end - begin for _, begin, _, end in windows)
        codes = torch.zeros((len(windows), self.config.num_codebooks, width), dtype=torch.long, device=self.device)
        for index, (stream, begin, _, end) in enumerate(windows):
            codes[index, :, :end - begin] = stream.tokens[1:, begin:end]
        wav = self._decode(codes)
        return {stream: wav[index, (start - begin) * self.frame_samples:(end - begin) * self.frame_samples]
                for index, (stream, begin, start, end) in enumerate(windows)}

    def _decode(self, codes: Any) -> np.ndarray:
        """The codec's decoder over codes [B, C, n], as the package's `VQManager.decode_vq_tokens` runs it
        (autocast to the engine's precision; none in float32, which CPU autocast refuses with a warning)
        → float32 samples [B, n × frame]."""
        from contextlib import nullcontext

        from fish_speech.utils import autocast_exclude_mps

        torch = self.torch
        lengths = torch.full((codes.shape[0],), codes.shape[2], device=self.device)
        autocast = nullcontext() if self.precision == torch.float32 else \
            autocast_exclude_mps(device_type=self.device.type, dtype=self.precision)
        with torch.inference_mode(), autocast:
            wav, _ = self.codec.decode(indices=codes, feature_lengths=lengths)
        return wav[:, 0].float().cpu().numpy()

    def decode_all(self, stream: FishStream) -> np.ndarray:
        """The stream's heard frames decoded in one pass, as the package does (what streamed pieces are held to)."""
        return self._decode(stream.codes().long().unsqueeze(0))[0]


def _block(layer: Any, x: Any, freqs: Any, mask: Any, store: Callable[[Any, Any], tuple[Any, Any]]) -> Any:
    """`TransformerBlock.forward` with the key/value cache (and each row's positions) kept by the caller."""
    h = x + _attention(layer.attention, layer.attention_norm(x), freqs, mask, store)
    return h + layer.feed_forward(layer.ffn_norm(h))


def _attention(attention: Any, x: Any, freqs: Any, mask: Any, store: Callable[[Any, Any], tuple[Any, Any]]) -> Any:
    """fish-speech's `Attention.forward`, but `store` writes this token's keys/values and returns what to attend to,
    `freqs` may hold a position per row, and one token per row attends without copying the cache per query head
    (`one_token_attention`)."""
    import torch.nn.functional as F

    batch, length, _ = x.shape
    q_size, kv_size = attention.n_head * attention.head_dim, attention.n_local_heads * attention.head_dim
    q, k, v = attention.wqkv(x).split([q_size, kv_size, kv_size], dim=-1)
    q = q.view(batch, length, attention.n_head, attention.head_dim)
    k = k.view(batch, length, attention.n_local_heads, attention.head_dim)
    v = v.view(batch, length, attention.n_local_heads, attention.head_dim)
    if attention.attention_qk_norm:
        q, k = attention.q_norm(q), attention.k_norm(k)
    q, k = _rotary(q, freqs), _rotary(k, freqs)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    k, v = store(k, v)
    if attention.use_sdpa and length == 1:  # a frame step: the cache read once, whatever the kernel
        y = one_token_attention(q, k, v, mask)
    elif attention.use_sdpa:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           enable_gqa=attention.n_head != attention.n_local_heads)
    else:
        repeat = attention.n_head // attention.n_local_heads
        y = attention.eq_scaled_dot_product_attention(q, k.repeat_interleave(repeat, dim=1),
                                                      v.repeat_interleave(repeat, dim=1), attn_mask=mask)
    return attention.wo(y.transpose(1, 2).contiguous().view(batch, length, q_size))


def _rotary(x: Any, freqs: Any) -> Any:
    """fish-speech's `apply_rotary_emb` with `freqs` [B or 1, S, head_dim / 2, 2]: a position per row allowed."""
    import torch

    shaped = x.float().reshape(*x.shape[:-1], -1, 2)
    freqs = freqs.view(freqs.shape[0], shaped.size(1), 1, shaped.size(3), 2)
    rotated = torch.stack([shaped[..., 0] * freqs[..., 0] - shaped[..., 1] * freqs[..., 1],
                           shaped[..., 1] * freqs[..., 0] + shaped[..., 0] * freqs[..., 1]], -1)
    return rotated.flatten(3).type_as(x)
