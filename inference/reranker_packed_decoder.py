"""Llama-family decoders (Llama, Qwen2, Qwen3) on packed tokens, with the model's own modules:
the common start of a pass's prompts computed once and kept for the next pass, projections
fused, attention on a padded view of each row (``PackedDecoder``)."""

from __future__ import annotations

import torch

PACKED_DECODER_TYPES = {"qwen3", "qwen2", "llama"}
# The keys and values of the last common start are kept for the next pass when they fit:
# Qwen3-0.6B's 127-token start of one query is 29 MB in fp32.
PREFIX_STATES_BYTES = 64 * 2**20


def shared_prefix(rows: list[list[int]]) -> int:
    """Tokens every row starts with (the prompt's fixed start, often the query too), leaving
    each row at least its last token. One row shares nothing: there is nothing to save."""
    if len(rows) < 2:
        return 0
    first, limit = rows[0], min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return length


class PackedDecoder:
    """Runs a Llama-family decoder on packed tokens, with the model's own modules.

    The rows of a micro-batch are concatenated. Their common start (``shared_prefix``: the
    system prompt, the instruction, often the query) is computed once: under causal
    attention its states do not depend on what follows, so each row attends to it as to its
    own copy. Projections and feed-forward see real tokens only; attention works on a padded
    view, causal within each row and never across rows; the last layer computes queries,
    output and feed-forward for each row's last token only. Returns the final-normed hidden
    state at each row's last token, equal to Hugging Face's up to float rounding.

    The common start's keys and values (``PrefixStates``) are kept for the next pass: the
    passes of one request, and the next request of the same query and instruction, start
    from them instead of computing the start again.
    """

    def __init__(self, base) -> None:
        config = base.config
        self.base = base
        self.layers = list(base.layers[: config.num_hidden_layers])
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        attention = self.layers[0].self_attn
        self.head_dim = getattr(attention, "head_dim", config.hidden_size // self.heads)
        self.scale = getattr(attention, "scaling", self.head_dim**-0.5)
        self.fused = [FusedProjections(layer) for layer in self.layers]
        self.kept: PrefixStates | None = None

    @staticmethod
    def supports(model) -> bool:
        """Llama, Qwen2 and Qwen3 decoders with full (not sliding-window) attention."""
        config = model.config
        if config.model_type not in PACKED_DECODER_TYPES:
            return False
        if getattr(config, "use_sliding_window", False):
            return False
        if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or []):
            return False
        base = getattr(model, "base_model", None)
        needed = ("embed_tokens", "layers", "norm", "rotary_emb")
        return base is not None and all(hasattr(base, name) for name in needed)

    def __call__(self, rows: list[list[int]], device: torch.device) -> torch.Tensor:
        kept = self.kept
        shared, reused, keeping = self.start(rows, device, kept)
        layout = PackedLayout(rows, shared, device, computed=not reused)
        states = kept if reused else keeping
        hidden = self.base.embed_tokens(layout.ids)
        cos, sin = self.base.rotary_emb(hidden[None], layout.positions[None])
        rotation = (cos[0][:, None, :], sin[0][:, None, :])
        last = len(self.layers) - 1
        for index in range(last):
            hidden = self._layer(index, hidden, layout, rotation, states, last_only=False)
        hidden = self._layer(last, hidden, layout, rotation, states, last_only=True)
        if keeping is not None:
            self.kept = keeping
        return self.base.norm(hidden)

    def start(
        self, rows: list[list[int]], device: torch.device, kept: PrefixStates | None
    ) -> tuple[int, bool, PrefixStates | None]:
        """How a pass over ``rows`` treats their common start: (its tokens, whether they come
        from ``kept``, the states to record for the next pass when it computes them)."""
        if kept is not None and kept.starts(rows, device):
            return len(kept.ids), True, None
        shared = shared_prefix(rows)
        weight = self.fused[0].qkv_weight
        # Keys and values of one token in every layer.
        token_bytes = 2 * len(self.layers) * self.kv_heads * self.head_dim * weight.element_size()
        if not shared or shared * token_bytes > PREFIX_STATES_BYTES:
            return shared, False, None
        return shared, False, PrefixStates(tuple(rows[0][:shared]), device)

    def _layer(self, index: int, hidden, layout, rotation, states, last_only: bool):
        """One decoder layer over packed tokens; ``last_only`` outputs each row's last token.
        ``states``: the common start's keys and values, read (reused) or recorded."""
        layer, fused = self.layers[index], self.fused[index]
        attention = layer.self_attn
        normed = layer.input_layernorm(hidden)
        picked = layout.last if last_only else slice(None)
        queries, keys, values = fused.qkv(normed, layout.last if last_only else None)
        queries = self._heads(queries, attention, "q_norm", self.heads)
        keys = self._heads(keys, attention, "k_norm", self.kv_heads)
        values = values.view(-1, self.kv_heads, self.head_dim)
        cos, sin = rotation
        queries = rotate(queries, cos[picked], sin[picked])
        keys = rotate(keys, cos, sin)
        if states is not None:
            keys, values = states.layer(index, keys, values, layout)
        context = layout.attend(queries, keys, values, self.scale, last_only)
        hidden = hidden[picked] + attention.o_proj(context)
        return hidden + fused.mlp(layer.mlp, layer.post_attention_layernorm(hidden))

    def _heads(self, projected, attention, norm: str, heads: int) -> torch.Tensor:
        """Split into heads; Qwen3 normalises each head (``q_norm``/``k_norm``)."""
        split = projected.view(-1, heads, self.head_dim)
        normalise = getattr(attention, norm, None)
        return normalise(split) if normalise is not None else split


class FusedProjections:
    """A decoder layer's projections that read the same rows, as one matrix product each:
    queries, keys and values; the feed-forward's gate and up. Fewer, wider products keep the
    cores busier than five thin ones. The modules' own weights become views of the fused
    ones: no second copy, and the model computes exactly as before."""

    def __init__(self, layer) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.sizes = [attention.q_proj.out_features, attention.k_proj.out_features]
        self.qkv_weight, self.qkv_bias = fuse(attention.q_proj, attention.k_proj, attention.v_proj)
        self.gate_up_weight, self.gate_up_bias = fuse(mlp.gate_proj, mlp.up_proj)

    def qkv(self, rows: torch.Tensor, last: torch.Tensor | None):
        """(queries, keys, values) of ``rows``; queries of the ``last`` rows only if given."""
        linear = torch.nn.functional.linear
        queries, keys = self.sizes
        if last is None:
            projected = linear(rows, self.qkv_weight, self.qkv_bias)
            return projected.split([queries, keys, projected.shape[1] - queries - keys], dim=1)
        bias = self.qkv_bias
        query_rows = linear(rows[last], self.qkv_weight[:queries], _part(bias, 0, queries))
        keys_values = linear(rows, self.qkv_weight[queries:], _part(bias, queries, None))
        return (query_rows, *keys_values.split([keys, keys_values.shape[1] - keys], dim=1))

    def mlp(self, mlp, rows: torch.Tensor) -> torch.Tensor:
        """The gated feed-forward (``down(act(gate) * up)``) with gate and up in one product."""
        projected = torch.nn.functional.linear(rows, self.gate_up_weight, self.gate_up_bias)
        gate, up = projected.chunk(2, dim=-1)
        return mlp.down_proj(mlp.act_fn(gate) * up)


def _part(bias: torch.Tensor | None, start: int, end: int | None) -> torch.Tensor | None:
    return None if bias is None else bias[start:end]


def fuse(*projections) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for linear ``projections`` of the same input, their outputs
    side by side; each projection's parameters become views of it."""
    weight = torch.cat([projection.weight.detach() for projection in projections])
    biases = [projection.bias for projection in projections]
    bias = None
    if any(value is not None for value in biases):
        bias = torch.cat(
            [
                value.detach() if value is not None else weight.new_zeros(p.out_features)
                for value, p in zip(biases, projections, strict=True)
            ]
        )
    start = 0
    for projection in projections:
        end = start + projection.out_features
        projection.weight = torch.nn.Parameter(weight[start:end], requires_grad=False)
        if projection.bias is not None:
            projection.bias = torch.nn.Parameter(bias[start:end], requires_grad=False)
        start = end
    return weight, bias


def rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, as Llama-family models apply it (``rotate_half``)."""
    half = states.shape[-1] // 2
    turned = torch.cat((-states[..., half:], states[..., :half]), dim=-1)
    return states * cos + turned * sin


class PrefixStates:
    """The keys and values of a common start (``ids``) in every layer, as attention reads
    them (normed and rotated): recorded by one pass, reused by the next passes that start so."""

    def __init__(self, ids: tuple[int, ...], device: torch.device) -> None:
        self.ids, self.device = ids, device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def starts(self, rows: list[list[int]], device: torch.device) -> bool:
        """Every row starts with ``ids`` and has tokens of its own after them."""
        size = len(self.ids)
        return device == self.device and all(
            len(row) > size and tuple(row[:size]) == self.ids for row in rows
        )

    def layer(self, index: int, keys, values, layout: PackedLayout):
        """Keys and values of every token attention reads in layer ``index``: recorded from
        this pass's start, or the kept start's put before this pass's own tokens."""
        if layout.computed:
            self.keys.append(keys[: layout.shared].clone())
            self.values.append(values[: layout.shared].clone())
            return keys, values
        return torch.cat((self.keys[index], keys)), torch.cat((self.values[index], values))


class PackedLayout:
    """Where packed tokens sit: ``shared`` prefix tokens once, then each row's own tokens.

    ``computed=False``: the prefix's keys and values come from an earlier pass
    (``PrefixStates``), so the packed tokens are the rows' own only; keys and values are still
    laid out prefix first.
    """

    def __init__(
        self, rows: list[list[int]], shared: int, device: torch.device, computed: bool = True
    ) -> None:
        own = [len(row) - shared for row in rows]
        self.computed = computed
        start = shared if computed else 0  # where the rows' own tokens begin in the packing
        ids = list(rows[0][:start])
        positions = list(range(start))
        for row in rows:
            ids.extend(row[shared:])
            positions.extend(range(shared, len(row)))
        self.ids = torch.tensor(ids, dtype=torch.long, device=device)
        self.positions = torch.tensor(positions, dtype=torch.long, device=device)
        self.shared, self.start, self.pairs, self.width = shared, start, len(rows), max(own)
        length = torch.tensor(own, device=device)
        ends = torch.cumsum(length, 0)
        starts = ends - length
        self.last = start + ends - 1
        self.uniform = min(own) == self.width
        columns = torch.arange(self.width, device=device)
        # Padding slots gather some real token; causality hides them from real queries.
        self.gather = torch.minimum(starts[:, None] + columns[None, :], ends[:, None] - 1)
        self.keep = (columns[None, :] < length[:, None]).flatten().nonzero()[:, 0]
        # Keys and values of each row: the prefix's, then its own, gathered in one copy.
        prefix = torch.arange(shared, device=device).expand(self.pairs, shared)
        self.key_index = torch.cat((prefix, shared + self.gather), dim=1)
        span = torch.arange(shared + self.width, device=device)
        # Query j of a row sits at position shared + j: it sees the prefix and its own 0..j.
        self.causal = span[None, :] <= shared + columns[:, None] if shared else None
        # Each row's last token sees the prefix and all of its own tokens.
        self.last_mask = (span[None, :] < shared + length[:, None])[:, None, None, :]

    def grid(self, packed: torch.Tensor) -> torch.Tensor:
        """Own tokens of each row in a ``[pairs, heads, width, dim]`` grid."""
        own = packed[self.start :]
        own = own.view(self.pairs, self.width, *own.shape[1:]) if self.uniform else own[self.gather]
        return own.transpose(1, 2)

    def attend(self, queries, keys, values, scale: float, last_only: bool) -> torch.Tensor:
        """Causal attention within each row (prefix included); context rows laid out as the
        queries: every packed token, or each row's last token when ``last_only``. On CPU query
        heads share key-value heads in groups (``enable_gqa``) without copies of the keys."""
        key_grid = keys[self.key_index].transpose(1, 2)
        value_grid = values[self.key_index].transpose(1, 2)
        groups = queries.shape[1] // keys.shape[1]
        shared_heads = groups == 1 or not keys.is_cuda
        if not shared_heads:  # CUDA's masked kernel takes no grouped heads: copy them
            key_grid = key_grid.repeat_interleave(groups, dim=1)
            value_grid = value_grid.repeat_interleave(groups, dim=1)

        def attend(query, key, value, **options):
            return torch.nn.functional.scaled_dot_product_attention(
                query, key, value, scale=scale, enable_gqa=shared_heads, **options
            )

        if last_only:
            context = attend(queries[:, :, None, :], key_grid, value_grid, attn_mask=self.last_mask)
            return context.reshape(self.pairs, -1)
        own_context = attend(
            self.grid(queries),
            key_grid,
            value_grid,
            attn_mask=self.causal,
            is_causal=self.causal is None,
        )
        own_context = own_context.transpose(1, 2).reshape(self.pairs * self.width, -1)
        if not self.uniform:
            own_context = own_context[self.keep]
        if not self.start:  # no prefix, or its states came from an earlier pass
            return own_context
        prefix = queries[: self.shared].transpose(0, 1)[None]
        prefix_keys = key_grid[:1, :, : self.shared]
        prefix_values = value_grid[:1, :, : self.shared]
        prefix_context = attend(prefix, prefix_keys, prefix_values, is_causal=True)
        prefix_context = prefix_context[0].transpose(0, 1).reshape(self.shared, -1)
        return torch.cat((prefix_context, own_context))
