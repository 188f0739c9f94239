"""Qwen3-TTS's per-frame work as fixed-shape tensor code, so one frame can be one CUDA graph.

The package decodes a frame with two HF `generate` machineries: the talker's (one token per frame, a left-padded
`DynamicCache` that grows by `torch.cat`) and, inside the talker's forward, a whole `code_predictor.generate`
call per frame (15 tokens, each through logits processors, stopping criteria and a growing cache). That is tens
of Python-driven steps and hundreds of small launches per frame whose shapes change every frame: a GPU waits on
Python (measured: RTF 2.3 for one stream of the 1.7B model on an H200). Here the same modules are called
directly:

- `sample_tokens`: transformers' sampling warpers in their order (temperature, top-k, top-p) and the draw its
  `torch.multinomial` makes (spelled out, without sync), so a seeded run draws what `generate` draws; argmax
  when not sampling;
- `CodePredictorLoop`: `code_predictor.generate(inputs_embeds=[past hidden, codebook-0 embedding],
  max_new_tokens=G-1)` as an unrolled loop over the predictor's own layers, per-group heads and embeddings, with a
  cache of 2 + (G-1) columns made for the call (each step attends to the columns written so far: the shapes of
  `generate`'s own steps, fixed for a given batch size);
- `TalkerRows`: the talker's key/value cache with a row per stream and a fixed number of columns (the longest
  prompt allowed plus the most frames), each row written at its own positions; a step attends through a per-row
  mask over a span of columns (512, 1,024, … or all: `row_cache.span_bucket`), so a step over a bucket of rows
  (1, 2, 4, 8 …) at a span always has the same shapes; `talker_step` runs the talker's own decoder layers over it.

No `.item()`/`.tolist()` in any of them: a frame is launched without waiting for the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from workers.engines.row_cache import mark_static, one_token_attention, row_bucket, visible_columns, write_rows

#: transformers' name for the talker's attention while LockN decodes with it (`use_row_attention`).
ROW_ATTENTION = "lockn_rows"
#: Columns a talker row holds beyond the most frames a stream may make: the longest prompt allowed (the package's
#: prompt for a sentence is a few dozen tokens; a clone's in-context prompt adds its reference clip's codes, 12.5
#: per second, and transcript).
MAX_PROMPT_TOKENS = 1024


# ----- sampling ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draw:
    """One sampler's settings, as `generate(do_sample=, temperature=, top_k=, top_p=)` takes them."""

    do_sample: bool
    temperature: float
    top_k: int
    top_p: float


def sample_tokens(logits: Any, draw: Draw) -> Any:
    """One token per row of `logits` [B, V] (float32, any penalties already applied), by transformers' rules:
    `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper` in that order, then `softmax` and one
    draw; the argmax when `draw.do_sample` is False. → [B].

    The draw is what `torch.multinomial(probs, 1)` (`generate`'s call) computes, spelled out: ATen's path for one
    sample divides the probabilities by Exp(1) noise from the same generator and takes the argmax, so a seeded
    eager run draws `generate`'s very tokens. Spelled out, it skips multinomial's validity checks (two
    reductions and an async assert per call) and is a pattern TorchInductor knows (Gumbel-max) and captures
    in a CUDA graph like any other random op."""
    import torch

    if not draw.do_sample:
        return logits.argmax(dim=-1)
    if draw.temperature != 1.0:
        logits = logits / draw.temperature
    if draw.top_k:
        threshold = torch.topk(logits, min(draw.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if draw.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=False, dim=-1)
        remove = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - draw.top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    probs = torch.nn.functional.softmax(logits, dim=-1)
    noise = torch.empty_like(probs).exponential_(1)
    return torch.argmax(probs / noise, dim=-1, keepdim=True).squeeze(-1)


# ----- the code predictor ----------------------------------------------------------------------------------------


class _Columns:
    """A duck-typed `Cache` for the code predictor's layers: their attention calls `update(keys, values, layer,
    kwargs)` once per layer; the new columns go in at `start` and the columns written so far come back."""

    def __init__(self, layers: int, shape: tuple[int, ...], dtype: Any, device: Any) -> None:
        import torch

        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.start = 0

    def update(self, keys: Any, values: Any, layer: int, _kwargs: Any = None) -> tuple[Any, Any]:
        end = self.start + keys.shape[2]
        self.keys[layer][:, :, self.start:end] = keys
        self.values[layer][:, :, self.start:end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class CodePredictorLoop:
    """`code_predictor.generate` for one frame of every row, without `generate`: codebooks 1…G-1 from the talker's
    last hidden state and the codebook-0 token's embedding (what the talker's forward hands `generate`).

    As in the package's `forward`: step 0 reads both inputs (positions 0 and 1) through `small_to_mtp_projection`
    and the decoder, and `lm_head[0]` gives codebook 1; step s reads codebook s through `codec_embedding[s-1]`
    (projected) at position s + 1 and `lm_head[s]` gives codebook s + 1."""

    def __init__(self, predictor: Any, draw: Draw) -> None:
        self.predictor, self.draw = predictor, draw
        self.model = predictor.model
        self.config = predictor.config
        self.codebooks = int(self.config.num_code_groups) - 1
        attention = self.model.layers[0].self_attn
        self.kv_heads = int(self.config.num_key_value_heads)
        self.head_dim = int(attention.head_dim)
        # transformers' sdpa/flash paths make the two-token prefill causal themselves when given no mask (as
        # `generate` does: its mask is all ones); eager attention needs the causal mask spelled out.
        self.eager = self.config._attn_implementation == "eager"

    def __call__(self, past_hidden: Any, token_hidden: Any) -> Any:
        """`past_hidden`, `token_hidden` [B, 1, D_talker] → codebooks 1…G-1 [B, G-1]."""
        import torch

        predictor, model = self.predictor, self.model
        x = predictor.small_to_mtp_projection(torch.cat((past_hidden, token_hidden), dim=1))
        batch = x.shape[0]
        cache = _Columns(len(model.layers), (batch, self.kv_heads, 2 + self.codebooks, self.head_dim),
                         x.dtype, x.device)
        positions = torch.arange(2 + self.codebooks, device=x.device).unsqueeze(0)
        cos, sin = model.rotary_emb(x, positions)
        codes = []
        for step in range(self.codebooks):
            start = 0 if step == 0 else step + 1
            end = start + x.shape[1]
            cache.start = start
            mask = self._causal_mask(x) if self.eager and x.shape[1] > 1 else None
            hidden = x
            for layer in model.layers:
                hidden = layer(hidden, attention_mask=mask, past_key_values=cache,
                               position_embeddings=(cos[:, start:end], sin[:, start:end]))[0]
            hidden = model.norm(hidden)
            logits = predictor.lm_head[step](hidden[:, -1]).float()
            code = sample_tokens(logits, self.draw)
            codes.append(code)
            if step + 1 < self.codebooks:
                x = predictor.small_to_mtp_projection(model.codec_embedding[step](code.unsqueeze(1)))
        return torch.stack(codes, dim=1)

    @staticmethod
    def _causal_mask(x: Any) -> Any:
        import torch

        length = x.shape[1]
        upper = torch.ones((length, length), dtype=torch.bool, device=x.device).triu(1)
        return torch.zeros((1, 1, length, length), dtype=x.dtype, device=x.device).masked_fill(
            upper, torch.finfo(x.dtype).min)


# ----- the talker's cache: a row per stream ----------------------------------------------------------------------


class _RowView:
    """A duck-typed `Cache` for one talker step: each row's new keys/values go to that row's own column
    (`positions` [b]); the rows' first `span` columns come back (the step's mask hides what a row has not
    written)."""

    def __init__(self, layers: list[tuple[Any, Any]], positions: Any, span: int) -> None:
        self.layers, self.positions, self.span = layers, positions, span

    def update(self, keys: Any, values: Any, layer: int, _kwargs: Any = None) -> tuple[Any, Any]:
        return write_rows(self.layers[layer], self.positions, keys, values, self.span)


class TalkerRows:
    """What each stream in the batch carries between frames, a row per stream: the talker's keys/values
    [rows, kv_heads, capacity, head_dim] per layer, and the row's codebook-0 token of the frame being made, the
    talker's last hidden state, the tokens drawn so far (the repetition penalty's memory), its next position and
    how many tokens it has drawn.

    A stream's row holds its prompt at columns 0…L-1 and each frame it reads at the next column: its positions
    are its own (no padding shifts them), and a step over rows 0…b-1 attends to columns ≤ each row's position.
    Live rows are kept at 0…n-1 (a leaving row's place is taken by the last one), so a step over the first
    `row_bucket(n)` rows covers them all; the rows past n are dummies (position 0) whose results are ignored.
    Rows are added a bucket at a time and never given back; once reserved for the most streams (a compiled
    decoder does so at its warm-up) the tensors never move, as the CUDA graphs that write them need."""

    def __init__(self, talker_model: Any, capacity: int, vocab: int, dtype: Any, device: Any) -> None:
        import torch

        config = talker_model.config
        attention = talker_model.layers[0].self_attn
        self.shape = (int(config.num_key_value_heads), capacity, int(attention.head_dim))
        self.layer_count = len(talker_model.layers)
        self.capacity, self.dtype, self.device = capacity, dtype, device
        self.layers: list[tuple[Any, Any]] = []
        #: Each per-row state tensor's shape past the row, and its dtype.
        self._state_shapes = {"tokens": ((), torch.long), "hidden": ((int(config.hidden_size),), dtype),
                              "seen": ((vocab,), torch.bool), "positions": ((), torch.long), "drawn": ((), torch.long)}
        self.tokens: Any = None  # [rows] codebook-0 token of the frame being made
        self.hidden: Any = None  # [rows, D] the talker's last hidden state
        self.seen: Any = None  # [rows, V] bool: tokens drawn so far
        self.positions: Any = None  # [rows] the next position (= the column the next token is written to)
        self.drawn: Any = None  # [rows] tokens drawn so far

    @property
    def rows(self) -> int:
        return self.layers[0][0].shape[0] if self.layers else 0

    def row_bytes(self) -> int:
        """What one stream's row takes: keys and values of every layer, and its state."""
        cache = 2 * self.layer_count * math.prod(self.shape) * self.dtype.itemsize
        return cache + sum(math.prod(shape) * dtype.itemsize for shape, dtype in self._state_shapes.values())

    def reserve(self, rows: int) -> bool:
        """Room for `rows` rows (its bucket), keeping what the rows hold; → whether the tensors moved (graphs
        recorded over the old ones would write there)."""
        import torch

        wanted = row_bucket(rows)
        if wanted <= self.rows:
            return False
        grown = []
        for index in range(self.layer_count):
            pair = tuple(torch.zeros((wanted, *self.shape), dtype=self.dtype, device=self.device) for _ in range(2))
            if self.layers:
                for new, old in zip(pair, self.layers[index]):
                    new[:old.shape[0]] = old
            for tensor in pair:
                mark_static(tensor)
            grown.append(pair)
        self.layers = grown
        for name, (shape, dtype) in self._state_shapes.items():
            tensor = torch.zeros((wanted, *shape), dtype=dtype, device=self.device)
            old = getattr(self, name)
            if old is not None:
                tensor[:old.shape[0]] = old
            setattr(self, name, tensor)
        return True

    def join(self, row: int, legacy: Any, token: Any, hidden: Any, seen: Any, position: int) -> None:
        """A prefilled stream into `row`: its own cache (per layer: keys, values [1, H, L, D]) into columns
        0…L-1, its first token [1], last hidden state [1, D], drawn-token memory [V] and next position."""
        for (keys, values), (own_keys, own_values) in zip(self.layers, legacy):
            length = own_keys.shape[2]
            keys[row, :, :length] = own_keys[0]
            values[row, :, :length] = own_values[0]
        self.tokens[row] = token[0]
        self.hidden[row] = hidden[0]
        self.seen[row] = seen
        self.positions[row] = position
        self.drawn[row] = 1

    def move(self, source: int, target: int, columns: int) -> None:
        """Row `source` (its first `columns` cache columns) into row `target`; `source` becomes a dummy."""
        for keys, values in self.layers:
            keys[target, :, :columns] = keys[source, :, :columns]
            values[target, :, :columns] = values[source, :, :columns]
        for name in self._state_shapes:
            tensor = getattr(self, name)
            tensor[target] = tensor[source]
        self.positions[source] = 0

    def advance(self, live: int, tokens: Any, hidden: Any) -> None:
        """Rows 0…live-1 read a frame and drew `tokens` [≥ live] with last hidden states `hidden` [≥ live, D]."""
        import torch

        rows = torch.arange(live, device=self.device)
        self.tokens[:live] = tokens[:live]
        self.hidden[:live] = hidden[:live]
        self.seen[rows, tokens[:live]] = True
        self.positions[:live] += 1
        self.drawn[:live] += 1

    def view(self, positions: Any, span: int) -> _RowView:
        return _RowView(self.layers, positions, span)


def row_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                  scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' sdpa attention, except one new token per row under a mask (the talker's batched frame step),
    which goes through `row_cache.one_token_attention`: transformers would copy the keys and values for every
    query head first (`repeat_kv`: under a mask it keeps PyTorch's grouped-query attention off), twice the cache's
    size written and read again per layer and frame."""
    if query.shape[2] == 1 and attention_mask is not None:
        return one_token_attention(query, key, value, attention_mask, scaling).transpose(1, 2).contiguous(), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  **kwargs)


def use_row_attention(config: Any) -> None:
    """Let the talker (`config`: its config, shared by its layers) attend through `row_attention`, with sdpa's
    masks; its code predictor keeps its own. Only an sdpa talker changes (eager attention stays the reference)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ROW_ATTENTION, row_attention)
    AttentionMaskInterface.register(ROW_ATTENTION, sdpa_mask)
    if config._attn_implementation == "sdpa":
        config._attn_implementation = {"": ROW_ATTENTION}  # sub-configs (the code predictor's) keep theirs


def talker_step(talker_model: Any, rows: TalkerRows, inputs: Any, positions: Any, span: int) -> Any:
    """The talker's decoder over one token per row: `inputs` [b, 1, D] at `positions` [b] (rows 0…b-1 of
    `rows`, attending within their first `span` columns) → the final-norm hidden states [b, 1, D]. What
    `Qwen3TTSTalkerModel.forward` does for one token, with each row's multimodal rotary positions (all three axes
    the same for codec tokens, as the package's `get_rope_index` gives them) and a mask of the columns each row
    has written."""
    import torch

    rotary_positions = positions.view(1, -1, 1).expand(3, -1, -1)
    cos, sin = talker_model.rotary_emb(inputs, rotary_positions)
    visible = visible_columns(positions, span)
    mask = torch.zeros(visible.shape, dtype=inputs.dtype, device=inputs.device).masked_fill(
        ~visible, torch.finfo(inputs.dtype).min)[:, None, None, :]
    cache = rows.view(positions, span)
    hidden = inputs
    for layer in talker_model.layers:
        hidden = layer(hidden, attention_mask=mask, past_key_values=cache, position_embeddings=(cos, sin))[0]
    return talker_model.norm(hidden)
