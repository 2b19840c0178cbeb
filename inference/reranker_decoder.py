"""Decoder rerankers: Qwen3-Reranker's prompt, then one head row at the last prompt token.

The prompt is the one Qwen3-Reranker's model card builds: a fixed system prefix, the body
``<Instruct>: …\\n<Query>: …\\n<Document>: …`` and a fixed assistant suffix. Prefix and suffix
are tokenised without special tokens and never truncated; the body is truncated
(``longest_first``) to what ``max_length`` leaves, so the last token is always the suffix's.

A yes/no reranker's score is ``logit(yes) − logit(no)`` at the last prompt token, which is
``(W[yes] − W[no]) · h`` (+ the bias difference): one row of the vocabulary-wide head, applied
to one position per pair. A plain forward computes the whole head (151,669 rows for Qwen3)
at every position; here it is never computed. A converted classifier ("seq-cls") carries
that row as its head already. Llama-family decoders run on packed tokens (``PackedDecoder``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from reranker_contract import YES_NO, YES_NO_TOKENS
from reranker_engine import BATCH_OVERHEAD_TOKENS, Reranker, collate, model_max_length, plan_batches
from reranker_settings import DEFAULT_PROMPT_MAX_LENGTH, Settings

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
PACKED_DECODER_TYPES = {"qwen3", "qwen2", "llama"}


class DecoderReranker(Reranker):
    """A decoder scoring each pair at its prompt's last token through one head row.

    ``yes_no``: the ids of "yes" and "no" (a causal LM); None for a classifier head.
    """

    def __init__(
        self,
        tokenizer,
        model,
        device: torch.device,
        settings: Settings,
        max_length: int,
        instruction: str,
        yes_no: tuple[int, int] | None,
    ) -> None:
        super().__init__(tokenizer, model, device, settings, max_length)
        self.instruction = instruction
        self.yes_no = yes_no
        self.prefix = self._ids(PREFIX)
        self.suffix = self._ids(SUFFIX)
        self.body_length = max_length - len(self.prefix) - len(self.suffix)
        if self.body_length < 1:
            raise ValueError(
                f"max_length {max_length} (RERANKER_MAX_LENGTH or the model's limit) leaves no "
                f"room after the prompt's {len(self.prefix) + len(self.suffix)} fixed tokens"
            )
        self.base = model.base_model
        self.weight, self.bias = head_row(model, yes_no)
        use_packed = settings.packed and PackedDecoder.supports(model)
        self.packed = PackedDecoder(self.base) if use_packed else None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def load(cls, tokenizer, config, kind, source: str, settings: Settings, device, read_model):
        """A prompted reranker: a causal LM's yes/no answer (refused before its weights are
        read when the tokenizer lacks either word), or a converted classifier's one head row."""
        yes_no = yes_no_ids(tokenizer, source) if kind.scoring == YES_NO else None
        model = read_model(yes_no is not None)
        wanted = settings.max_length or DEFAULT_PROMPT_MAX_LENGTH
        max_length = min(wanted, model_max_length(tokenizer, config))
        return cls(tokenizer, model, device, settings, max_length, kind.instruction, yes_no)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def tokenize(
        self, pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[dict]:
        """Prompt token ids per pair: prefix + body (truncated to fit) + suffix."""
        chosen = self.instruction if instruction is None else instruction
        bodies = [
            BODY.format(instruction=chosen, query=query, document=document)
            for query, document in pairs
        ]
        encoded = self.tokenizer(
            bodies,
            add_special_tokens=False,
            truncation="longest_first",
            max_length=self.body_length,
            return_attention_mask=False,
        )["input_ids"]
        return [{"input_ids": self.prefix + body + self.suffix} for body in encoded]

    def plan_batches(self, encoded: list[dict], lengths: list[int]) -> list[list[int]]:
        """Packed passes compute the prompts' common start once each: the budget counts the
        tokens after it, and each pass pays for it again as overhead."""
        if self.packed is None:
            return super().plan_batches(encoded, lengths)
        shared = shared_prefix([row["input_ids"] for row in encoded])
        own = [length - shared for length in lengths]
        overhead = BATCH_OVERHEAD_TOKENS + shared
        return plan_batches(own, self.batch_tokens, overhead, packed=True)

    def forward(self, rows: list[dict]) -> torch.Tensor:
        """``(W[yes] − W[no]) · h`` (+ bias) at each row's last token; packed where possible."""
        ids = [row["input_ids"] for row in rows]
        if self.packed is not None:
            hidden = self.packed(ids, self.device)
        else:
            hidden = padded_last_hidden(self.base, ids, self.pad_id, self.device)
        return hidden.float() @ self.weight + self.bias


def yes_no_ids(tokenizer, source: str) -> tuple[int, int]:
    """The ids of the single tokens "yes" and "no"; refuse a tokenizer without them."""
    ids = []
    for token in YES_NO_TOKENS:
        found = tokenizer.convert_tokens_to_ids(token)
        unknown = tokenizer.unk_token_id
        if found is None or (unknown is not None and found == unknown):
            raise ValueError(
                f"{source}'s tokenizer has no single {token!r} token; yes-no scoring reads the "
                "logits of the tokens 'yes' and 'no' (a Qwen3-Reranker-style model has both)"
            )
        ids.append(found)
    return ids[0], ids[1]


def head_row(model, yes_no: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the one row the score needs, in fp32 on the model's device.

    ``yes_no``: token ids of "yes" and "no" in the LM head (``W[yes] − W[no]``); None for a
    classifier head, whose one label is the row and whose two labels give ``W[1] − W[0]``.
    """
    if yes_no is not None:
        head = model.get_output_embeddings()
        rows = list(yes_no)
    else:
        head = getattr(model, "score", None) or model.classifier
        rows = [0] if head.weight.shape[0] == 1 else [1, 0]
    weight = head.weight[rows].float()
    bias = head.bias[rows].float() if getattr(head, "bias", None) is not None else None
    if len(rows) == 2:
        weight = weight[0] - weight[1]
        bias = None if bias is None else bias[0] - bias[1]
    else:
        weight, bias = weight[0], None if bias is None else bias[0]
    if bias is None:
        bias = torch.zeros((), device=weight.device)
    return weight.detach().clone(), bias.detach().clone()


def padded_last_hidden(base, rows: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """The base model's forward on right-padded rows; the final hidden state of each row's
    last real token. Any decoder architecture transformers knows runs this way."""
    features = collate(
        [{"input_ids": row, "attention_mask": [1] * len(row)} for row in rows],
        {"input_ids": pad_id},
        left=False,
        device=device,
    )
    hidden = base(**features, use_cache=False).last_hidden_state
    last = torch.tensor([len(row) - 1 for row in rows], device=device)
    return hidden[torch.arange(len(rows), device=device), last]


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
        layout = PackedLayout(rows, shared_prefix(rows), device)
        hidden = self.base.embed_tokens(layout.ids)
        cos, sin = self.base.rotary_emb(hidden[None], layout.positions[None])
        rotation = (cos[0][:, None, :], sin[0][:, None, :])
        last = len(self.layers) - 1
        for index in range(last):
            hidden = self._layer(index, hidden, layout, rotation, last_only=False)
        hidden = self._layer(last, hidden, layout, rotation, last_only=True)
        return self.base.norm(hidden)

    def _layer(self, index: int, hidden, layout: PackedLayout, rotation, last_only: bool):
        """One decoder layer over packed tokens; ``last_only`` outputs each row's last token."""
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


class PackedLayout:
    """Where packed tokens sit: ``shared`` prefix tokens once, then each row's own tokens."""

    def __init__(self, rows: list[list[int]], shared: int, device: torch.device) -> None:
        own = [len(row) - shared for row in rows]
        ids = list(rows[0][:shared])
        positions = list(range(shared))
        for row in rows:
            ids.extend(row[shared:])
            positions.extend(range(shared, len(row)))
        self.ids = torch.tensor(ids, dtype=torch.long, device=device)
        self.positions = torch.tensor(positions, dtype=torch.long, device=device)
        self.shared, self.pairs, self.width = shared, len(rows), max(own)
        length = torch.tensor(own, device=device)
        ends = torch.cumsum(length, 0)
        starts = ends - length
        self.last = shared + ends - 1
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
        own = packed[self.shared :]
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
        if not self.shared:
            return own_context
        prefix = queries[: self.shared].transpose(0, 1)[None]
        prefix_keys = key_grid[:1, :, : self.shared]
        prefix_values = value_grid[:1, :, : self.shared]
        prefix_context = attend(prefix, prefix_keys, prefix_values, is_causal=True)
        prefix_context = prefix_context[0].transpose(0, 1).reshape(self.shared, -1)
        return torch.cat((prefix_context, own_context))
