"""A batch's key/value cache with a row per stream: the shapes a fixed-shape frame step runs at, and its writes.

Both stream decoders (`fish_stream.py`, `qwen3_fast.py`) keep one cache for the whole batch, allocated once (a
recorded CUDA graph reads and writes it at fixed addresses: `mark_static`), a row per stream, each row at its own
positions. A step runs over a bucket of rows (`row_bucket`: 1, 2, 4, … streams, the rows past the live ones
dummies) and attends over a span of columns (`span_bucket`: the columns its rows have written rounded up to 512,
1,024, 2,048 … or the whole capacity): a cache sized for the longest request (Fish: 7,168 columns, 0.8 GB a row at
S1-mini size) would otherwise be read whole by every row at every frame, the largest cost of a step at 32 streams.
Each (bucket, span) is a graph of its own (`fast_step.FastStep`). The live rows stay 0…n-1 (`free_row`); a step
writes each row's new keys and values at its own column (`write_rows`, no boolean index, no host read) and
attends to the columns each row has written (`visible_columns`), one token per row reading the cache once
(`one_token_attention`).

The rows are allocated up front for the most streams decoded together (`LOCKN_GPU_MAX_STREAMS`), so on a GPU
their number is fitted to the memory free when the decoder is made (`fit_streams`): a card that cannot hold eight
rows (a Fish S1-mini row is 0.8 GB) decodes four together, saying so, rather than failing its warm-up on an
out-of-memory error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: The narrowest span of cache columns a step attends over (the next are twice as wide, up to the capacity).
SMALLEST_SPAN = 512
#: Of the GPU memory free when a decoder is made, the share its cache rows may take: the rest stays for the
#: frame step's and the codec's working memory (a batched codec call over every stream's piece is the largest),
#: the recorded graphs' pools and the next model a worker loads.
CACHE_SHARE = 0.6


def row_bucket(rows: int) -> int:
    """The rows a frame step runs over for `rows` live streams: the next power of two (one graph per bucket)."""
    return 1 << max(0, rows - 1).bit_length()


def row_buckets(max_streams: int) -> list[int]:
    """Every bucket up to the one `max_streams` streams use: 1, 2, 4, … (what a warm-up builds)."""
    return [1 << power for power in range(row_bucket(max_streams).bit_length())]


def free_device_bytes(device: Any) -> int | None:
    """Bytes free on `device` now if it is a CUDA device, counting what PyTorch's allocator holds unused in this
    process (an earlier model's codec calls leave it cached); None elsewhere (a CPU's memory is not fitted)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(torch.cuda.mem_get_info(device)[0] + cached)


def streams_that_fit(wanted: int, row_bytes: int, free_bytes: int | None, share: float = CACHE_SHARE) -> int:
    """The most streams, up to `wanted`, whose cache rows fit in `share` of `free_bytes`. Rows are allocated a
    bucket at a time, so fewer than `wanted` is a power of two (the rows of its bucket fit); 0: not even one row
    fits. `free_bytes` None (not a GPU): `wanted`."""
    if free_bytes is None:
        return wanted
    rows = int(free_bytes * share) // row_bytes
    if row_bucket(wanted) <= rows:
        return wanted
    return 1 << (rows.bit_length() - 1) if rows else 0


def fit_streams(engine: str, wanted: int, row_bytes: int, free_bytes: int | None) -> int:
    """`streams_that_fit`, said in the worker's log when it is fewer than `wanted`; raises, with what a person can
    change, when not one stream fits."""
    streams = streams_that_fit(wanted, row_bytes, free_bytes)
    if free_bytes is None or streams == wanted:
        return streams
    needed = f"{engine} keeps {row_bytes / 2**30:.2f} GiB of key/value cache a stream, {free_bytes / 2**30:.1f} GiB " \
             "of GPU memory is free"
    if streams == 0:
        raise RuntimeError(f"{needed}: not enough for one stream beside the model's working memory; free the GPU "
                           "(another engine or program on it) or load this engine on a larger one")
    log.warning("%s: decoding %d streams together, not %d (LOCKN_GPU_MAX_STREAMS); the other jobs wait their turn",
                needed, streams, wanted)
    return streams


def free_row(rows: list[Any], stream: Any, move: Callable[[int, int, Any], None]) -> None:
    """Take `stream`'s row (`stream.row`, an index into `rows`) back, keeping the live rows at 0…n-1: the last
    row's stream moves into the freed one, `move(last, row, moved_stream)` copying what its cache row holds (in
    inference mode, where the cache was made and alone may change). A stream holding no row is left as it is."""
    if stream.row is None:
        return
    row, last = stream.row, len(rows) - 1
    if row != last:
        import torch

        moved = rows[last]
        with torch.inference_mode():
            move(last, row, moved)
        moved.row, rows[row] = row, moved
    rows.pop()
    stream.row = None


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def span_buckets(capacity: int, smallest: int | None = SMALLEST_SPAN) -> list[int]:
    """The spans of cache columns a step may attend over: `smallest`, twice that, … below `capacity`, then
    `capacity` (one graph each); `smallest=None`: the whole capacity only."""
    spans, span = [], smallest or capacity
    while span < capacity:
        spans.append(span)
        span *= 2
    return spans + [capacity]


def span_bucket(columns: int, spans: Sequence[int]) -> int:
    """The narrowest of `spans` holding `columns` columns (a step's rows attend to columns 0…position)."""
    for span in spans:
        if columns <= span:
            return span
    raise ValueError(f"{columns} cache columns wanted, the cache holds {spans[-1]}")


def visible_columns(positions: Any, span: int) -> Any:
    """[b, span] bool: the columns each row (its position in `positions` [b]) attends to, 0…position."""
    import torch

    return torch.arange(span, device=positions.device)[None, :] <= positions[:, None]


def write_rows(cache: tuple[Any, Any], positions: Any, keys: Any, values: Any, span: int) -> tuple[Any, Any]:
    """One step's keys and values [b, heads, 1, head_dim] into rows 0…b-1 of a layer's `cache` (keys, values
    [rows, heads, capacity, head_dim]), each row at its own column `positions` [b], in place (no boolean index,
    no host read); → those rows' first `span` columns, what the step attends over."""
    import torch

    cache_keys, cache_values = cache
    rows = torch.arange(positions.shape[0], device=positions.device)
    cache_keys[rows, :, positions] = keys[:, :, 0]
    cache_values[rows, :, positions] = values[:, :, 0]
    return cache_keys[:len(rows), :, :span], cache_values[:len(rows), :, :span]


def one_token_attention(query: Any, keys: Any, values: Any, mask: Any, scale: float | None = None) -> Any:
    """Attention of one new token per row, `query` [b, H, 1, d], over `keys` and `values` [b, KV, S, d] each shared
    by a group of H / KV query heads, under `mask` [b, 1, 1, S] (bool or additive); → [b, H, 1, d].

    What `scaled_dot_product_attention(enable_gqa=True)` computes, without its cost here: under a mask, grouped
    heads leave PyTorch only its math kernel, which copies the keys and values for every query head (as
    transformers' `repeat_kv` does before calling it), reading and writing the cache several times over per frame.
    Instead the H / KV query heads of a group are read as that key/value head's query positions
    ([b, KV, H / KV, d]: each attends on its own, under the same mask): the same sums, any kernel, the cache
    read once."""
    import torch.nn.functional as F

    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, keys.shape[1], heads // keys.shape[1], dim)
    return F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=scale).reshape(
        batch, heads, 1, dim)


def mark_static(tensor: Any) -> None:
    """Tell torch.compile the tensor keeps its address (a CUDA graph may then write it in place), as
    transformers' `StaticCache` does; a no-op where dynamo is missing."""
    try:
        import torch._dynamo

        torch._dynamo.mark_static_address(tensor)
    except (ImportError, AttributeError):
        pass
