"""Qwen3-TTS decoded a frame at a time, many streams together, audio released every few frames.

The package's own `generate` runs one batch from start to end and returns audio only when the longest request is
done. This decoder keeps the package's prompt (the exact talker input it builds for a preset speaker, an
instruction or a clone prompt) and its sampling rules, and runs the talker loop itself so that
`StreamBatcher` can add and remove streams between frames:

- `prefill`: the package builds the talker's input embeddings (we stop it right before its `talker.generate`),
  the talker reads them into a cache of the stream's own, and the first codebook-0 token is drawn;
- `step`: for every active stream at once, the code predictor completes the current frame (15 more codebooks),
  the frame's embedding plus the next text embedding goes through the talker in one batched forward over a
  left-padded key/value cache, and each stream draws its next codebook-0 token (repetition penalty, suppressed
  control tokens, no end in the first two frames: the package's rules);
- audio: the 12 Hz tokenizer's decoder is causal, so a few new frames decoded with `LEFT_CONTEXT_FRAMES` frames
  before them give the samples of those frames (the package's own `chunked_decode` does the same with 300-frame
  chunks). First audio leaves after `FIRST_CHUNK_FRAMES` frames (0.16 s of speech), then every `CHUNK_FRAMES`.

Streams that join are prefilled alone and then merged into the batch's cache (left padding and an attention
mask keep each stream's positions its own); streams that leave are dropped from it. Greedy decoding (the tests)
gives every stream the same codes together as alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.engines.qwen3_fast import CodePredictorLoop, Draw
from workers.engines.stream_audio import ChunkSchedule

#: Frames of audio before the first chunk leaves (12.5 frames per second: 0.16 s), and between later chunks.
FIRST_CHUNK_FRAMES = 2
CHUNK_FRAMES = 8
#: Frames decoded before each chunk as context and then dropped (the package's `chunked_decode` uses 25).
LEFT_CONTEXT_FRAMES = 25
SCHEDULE = ChunkSchedule(FIRST_CHUNK_FRAMES, CHUNK_FRAMES, LEFT_CONTEXT_FRAMES)


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
    """One stream's place in the batch: what the talker has read, and the frames and audio made so far."""

    cache: Any  # the stream's own key/value cache until it joins the batch (then None)
    length: int  # tokens the talker has read for this stream (its next position)
    past_hidden: Any  # the talker's last hidden state [1, 1, D]
    token: int  # the codebook-0 token of the frame being made
    trailing: Any  # text embeddings still to be read, one per frame [1, T, D]
    pad_embed: Any  # what is read once the text is used up [1, 1, D]
    max_frames: int
    context: Any  # codes [Q, n] decoded before this stream's first frame (a clone's reference), or None
    seen: Any  # [V] bool: codebook-0 tokens drawn so far (the repetition penalty's memory)
    frames: list = field(default_factory=list)  # [Q] code tensors, one per finished frame
    decoded_frames: int = 0  # frames already turned into audio
    drawn: int = 1  # codebook-0 tokens drawn (the first comes from the prefill)

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

    def __init__(self, wrapper: Any, max_frames: int, greedy: bool = False) -> None:
        import torch

        self.torch = torch
        self.wrapper = wrapper
        self.model = wrapper.model  # Qwen3TTSForConditionalGeneration
        self.talker = self.model.talker
        self.config = self.model.config.talker_config
        self.max_frames = max_frames
        self.greedy = greedy
        self.device = self.talker.device
        self.eos = int(self.config.codec_eos_token_id)
        self.groups = int(self.config.num_code_groups)
        self._decoder = self.model.speech_tokenizer.model.decoder
        self.upsample = int(self._decoder.total_upsample)
        self._batch: list[QwenStream] = []
        self._cache: Any = None  # the batch's key/value cache (legacy tuples per layer), rows as in `_batch`
        self._mask: Any = None  # [B, T] 1 where a row's cache column holds one of its tokens
        self.sampling: Sampling | None = None
        self._predictor: CodePredictorLoop | None = None  # made with the sampling settings (first prefill)
        self._suppress: Any = None

    # ----- prefill ---------------------------------------------------------------------------------------------

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
        """Start a stream: the prompt through the talker, the first token drawn."""
        torch = self.torch
        with torch.inference_mode():
            context = request.context()
            prompt = self.capture_prompt(request.generate)
            self._remember_sampling(prompt)
            embeds, mask = prompt["inputs_embeds"], prompt["attention_mask"]
            length = int(embeds.shape[1])
            positions = torch.arange(length, device=self.device).view(1, 1, -1).expand(3, 1, -1)
            out = self.talker.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                    use_cache=True, cache_position=torch.arange(length, device=self.device))
            hidden = out.last_hidden_state[:, -1:, :]
            vocab = int(self.talker.codec_head.out_features)
            seen = torch.zeros(vocab, dtype=torch.bool, device=self.device)
            token = self._draw(self.talker.codec_head(hidden[:, -1]), seen.view(1, -1), [0])[0]
            seen[token] = True
        max_frames = min(self.max_frames, int(prompt.get("max_new_tokens") or self.max_frames) - 1)
        stream = QwenStream(cache=out.past_key_values.to_legacy_cache(), length=length, past_hidden=hidden,
                            token=token, trailing=prompt["trailing_text_hidden"], pad_embed=prompt["tts_pad_embed"],
                            max_frames=max(1, max_frames), context=None if context is None else context.T, seen=seen)
        return stream

    def _remember_sampling(self, prompt: dict[str, Any]) -> None:
        if self.sampling is None:
            sampling = Sampling.of(prompt)
            if self.greedy:
                sampling = Sampling(False, 1, 1.0, 1.0, sampling.repetition_penalty, False, 1, 1.0, 1.0)
            self.sampling = sampling
            self._predictor = CodePredictorLoop(self.talker.code_predictor, Draw(
                sampling.subtalker_dosample, sampling.subtalker_temperature, sampling.subtalker_top_k,
                sampling.subtalker_top_p))
            self._suppress = self.torch.tensor(prompt.get("suppress_tokens") or [], dtype=self.torch.long,
                                               device=self.device)

    # ----- one frame for every stream ---------------------------------------------------------------------------

    def step(self, streams: Sequence[QwenStream]) -> list[tuple[list[np.ndarray], bool]]:
        torch = self.torch
        with torch.inference_mode():
            self._align(list(streams))
            frames, token_hidden = self._complete_frames(streams)
            results = []
            for row, stream in enumerate(streams):
                stream.frames.append(frames[row])
            finished = [stream.token == self.eos or len(stream.frames) >= stream.max_frames for stream in streams]
            # A stream whose frame ended it draws no more: the talker reads the next frame for the others only
            # (it would be thrown away), but keeping the batch's shape costs less than reshaping it mid-step.
            self._advance(streams, frames, token_hidden)
            for stream, done in zip(streams, finished):
                if stream.token == self.eos and not done:
                    done = True
                results.append((self._audio(stream, done), done))
        return results

    def _complete_frames(self, streams: Sequence[QwenStream]) -> tuple[Any, Any]:
        """The code predictor fills codebooks 1…15 of every stream's current frame at once → frames [B, Q], and
        the codebook-0 embeddings it started from (the talker reads them again)."""
        torch = self.torch
        tokens = torch.tensor([[s.token] for s in streams], dtype=torch.long, device=self.device)
        token_hidden = self.talker.get_input_embeddings()(tokens)
        past_hidden = torch.cat([s.past_hidden for s in streams], dim=0)
        predicted = self._predictor(past_hidden, token_hidden)
        return torch.cat((tokens, predicted), dim=-1), token_hidden

    def _advance(self, streams: Sequence[QwenStream], frames: Any, token_hidden: Any) -> None:
        """Each stream's finished frame (plus its next text embedding) through the talker; draw the next tokens."""
        torch = self.torch
        embeddings = self.talker.code_predictor.get_input_embeddings()
        inputs = token_hidden + sum(embeddings[i](frames[:, i + 1:i + 2]) for i in range(self.groups - 1))
        text = [s.trailing[:, len(s.frames) - 1] if len(s.frames) - 1 < s.trailing.shape[1] else s.pad_embed[:, 0]
                for s in streams]
        inputs = inputs + torch.cat(text, dim=0).unsqueeze(1)
        ones = torch.ones((len(streams), 1), dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat((self._mask, ones), dim=1)
        positions = torch.tensor([s.length for s in streams], device=self.device).view(1, -1, 1).expand(3, -1, -1)
        cache_position = torch.tensor([self._mask.shape[1] - 1], device=self.device)
        out = self.talker.model(inputs_embeds=inputs, attention_mask=self._mask, position_ids=positions,
                                past_key_values=self._as_cache(), use_cache=True, cache_position=cache_position)
        self._cache = out.past_key_values.to_legacy_cache()
        hidden = out.last_hidden_state[:, -1:, :]
        seen = torch.stack([s.seen for s in streams])
        tokens = self._draw(self.talker.codec_head(hidden[:, -1]), seen, [s.drawn for s in streams])
        for row, stream in enumerate(streams):
            stream.length += 1
            stream.past_hidden = hidden[row:row + 1]
            stream.token = tokens[row]
            stream.seen[tokens[row]] = True
            stream.drawn += 1

    def _draw(self, logits: Any, seen: Any, drawn: list[int]) -> list[int]:
        """The next codebook-0 token per row, by the package's rules (transformers' processors, in its order)."""
        torch, sampling = self.torch, self.sampling
        logits = logits.float()
        if sampling.repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * sampling.repetition_penalty,
                                    logits / sampling.repetition_penalty)
            logits = torch.where(seen, penalised, logits)
        too_early = torch.tensor([count < 2 for count in drawn], device=self.device)  # min_new_tokens=2
        logits[too_early, self.eos] = float("-inf")
        if self._suppress.numel():
            logits[:, self._suppress] = float("-inf")
        if not sampling.do_sample:
            return logits.argmax(dim=-1).tolist()
        logits = logits / sampling.temperature
        if sampling.top_k:
            threshold = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        if sampling.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=False, dim=-1)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - sampling.top_p)
            remove[:, -1] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        return torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(1).tolist()

    # ----- the batch's cache -------------------------------------------------------------------------------------

    def _align(self, streams: list[QwenStream]) -> None:
        """Make the batch's cache hold exactly `streams`, in order: drop rows that left, merge ones that joined."""
        torch = self.torch
        if streams == self._batch:
            return
        kept = [row for row, stream in enumerate(self._batch) if stream in streams]
        layers: list[list[Any]] = []
        masks: list[Any] = []
        if kept and self._cache is not None:
            index = torch.tensor(kept, device=self.device)
            layers = [[k.index_select(0, index), v.index_select(0, index)] for k, v in self._cache]
            masks = [self._mask.index_select(0, index)]
        rows = [self._batch[row] for row in kept]
        for stream in streams:
            if stream in rows:
                continue
            own = stream.cache
            own_mask = torch.ones((1, own[0][0].shape[2]), dtype=torch.long, device=self.device)
            layers = [[*pair, k, v] for pair, (k, v) in zip(layers, own)] if layers else [[k, v] for k, v in own]
            masks.append(own_mask)
            stream.cache = None
            rows.append(stream)
        width = max(mask.shape[1] for mask in masks)
        mask = torch.cat([_left_pad(m, width, dim=1) for m in masks], dim=0)
        cache = []
        for parts in layers:
            keys = torch.cat([_left_pad(k, width, dim=2) for k in parts[0::2]], dim=0)
            values = torch.cat([_left_pad(v, width, dim=2) for v in parts[1::2]], dim=0)
            cache.append((keys, values))
        order = [rows.index(stream) for stream in streams]
        if order != list(range(len(rows))):
            index = torch.tensor(order, device=self.device)
            cache = [(k.index_select(0, index), v.index_select(0, index)) for k, v in cache]
            mask = mask.index_select(0, index)
        drop = int((mask.sum(dim=0) == 0).to(torch.int).cumprod(dim=0).sum())  # columns no row uses any more
        self._cache = [(k[:, :, drop:], v[:, :, drop:]) for k, v in cache]
        self._mask = mask[:, drop:]
        self._batch = list(streams)

    def _as_cache(self) -> Any:
        from transformers.cache_utils import DynamicCache

        return DynamicCache.from_legacy_cache(tuple(self._cache))

    def release(self, stream: QwenStream) -> None:
        """Nothing to free at once: the stream's row leaves the cache at the next step's `_align`."""
        stream.cache = None

    # ----- audio ------------------------------------------------------------------------------------------------

    def _audio(self, stream: QwenStream, finished: bool) -> list[np.ndarray]:
        """The samples of the frames not yet decoded, when enough have gathered (or the stream ended)."""
        frames = [f for f in stream.frames if int(f[0]) != self.eos]
        due = SCHEDULE.due(stream.decoded_frames, len(frames), finished)
        if due is None:
            return []
        chunk = self.decode_frames(stream, frames, *due)
        stream.decoded_frames = due[1]
        return [chunk]

    def decode_frames(self, stream: QwenStream, frames: list, start: int, end: int) -> np.ndarray:
        """Samples of frames `start:end`, decoded with up to `LEFT_CONTEXT_FRAMES` frames before them."""
        torch = self.torch
        codes = torch.stack(frames[:end]).T  # [Q, n]
        if stream.context is not None:
            codes = torch.cat((stream.context.to(codes.device), codes), dim=1)
            start, end = start + stream.context.shape[1], end + stream.context.shape[1]
        begin = SCHEDULE.window(start)
        with torch.inference_mode():
            wav = self._decoder(codes[:, begin:end].clamp(min=0).unsqueeze(0))
        return wav[0, 0, (start - begin) * self.upsample:].float().cpu().numpy().astype(np.float32)

    def decode_all(self, stream: QwenStream) -> np.ndarray:
        """The stream's frames decoded in one pass, as the package does (the reference streamed chunks are held to)."""
        frames = [f for f in stream.frames if int(f[0]) != self.eos]
        codes = self.torch.stack(frames)  # [n, Q]
        wavs, _ = self.model.speech_tokenizer.decode([{"audio_codes": codes}])
        return np.asarray(wavs[0], dtype=np.float32)


def _left_pad(tensor: Any, width: int, dim: int) -> Any:
    """`tensor` with zeros added before its `dim` axis up to `width`."""
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat((torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor), dim=dim)
