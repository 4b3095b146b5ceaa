"""A tiny, randomly initialised llama-architecture GGUF that llama.cpp loads and runs offline.

``write_tiny_gguf(path)`` writes a 2-layer model (64 wide, 0.5 MB of f32 tensors) with a
SentencePiece-style ("llama") vocabulary of 367 tokens: the control tokens ``<unk> <s> </s>
<|im_start|> <|im_end|>``, the 256 ``<0xNN>`` byte-fallback tokens, printable ASCII characters and a
few words. Its output is gibberish; it exists so that tests and benchmarks run the real llama.cpp
loading, templating, grammar and sampling code with no download.

The rows of the output projection for the control tokens are zero while the others are large, so the
model practically never ends a reply on its own (``</s>`` and ``<|im_end|>`` are never among the top
40 candidates): a reply runs until ``max_tokens`` or until a grammar is satisfied.

The chat template is ChatML. :data:`TOOL_TEMPLATE` (the default) renders ``tools`` into the system
prompt and assistant ``tool_calls``/``tool`` results Hermes-style; :data:`PLAIN_TEMPLATE` ignores tools.
"""

from __future__ import annotations

import string
from pathlib import Path

import gguf
import numpy as np

PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOOL_TEMPLATE = """\
{%- if tools %}
<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}
You may call functions. Their signatures:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}
</tools>
To call one, reply with <tool_call>{"name": <name>, "arguments": <arguments object>}</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}
<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{% for message in messages %}
{% if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}
<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}
{% for call in message.tool_calls %}
{% set arguments = call.function.arguments | tojson %}
<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ arguments }}}</tool_call>
{% endfor %}
<|im_end|>
{% elif message.role == 'tool' %}
<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""

CONTROL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
WORDS = ["▁the", "▁you", "▁hello", "▁call", "▁tool", "name", "arguments", '{"', '":', '"}', "▁Paris"]

N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_LAYER = 64, 4, 2, 128, 2
HEAD_DIM = N_EMBD // N_HEAD


def vocabulary() -> tuple[list[str], list[float], list[gguf.TokenType]]:
    """Tokens, SentencePiece scores (longer pieces merge first) and token types."""
    tokens = list(CONTROL_TOKENS)
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * (len(CONTROL_TOKENS) - 1)
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = ["▁", *(c for c in string.printable if c.isprintable() and c != " "), *WORDS]
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * (len(CONTROL_TOKENS) + 256) + [float(len(piece)) for piece in pieces]
    return tokens, scores, types


def write_tiny_gguf(
    path: Path, *, chat_template: str | None = TOOL_TEMPLATE, seed: int = 0, context_length: int = 2048
) -> Path:
    """Write the model to ``path`` (in a few milliseconds) and return ``path``."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)

    def weight(*shape: int, scale: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("parley-tiny-random")
    writer.add_context_length(context_length)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_space_prefix(False)  # else SentencePiece puts a space after every control token
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    # numpy shapes are the reverse of llama.cpp's ``ne``: token_embd is {n_embd, n_vocab} there.
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, scale=1.0))
    for layer in range(N_LAYER):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{block}.attn_q.weight", weight(N_HEAD * HEAD_DIM, N_EMBD))
        writer.add_tensor(f"{block}.attn_k.weight", weight(N_HEAD_KV * HEAD_DIM, N_EMBD))
        writer.add_tensor(f"{block}.attn_v.weight", weight(N_HEAD_KV * HEAD_DIM, N_EMBD))
        writer.add_tensor(f"{block}.attn_output.weight", weight(N_EMBD, N_HEAD * HEAD_DIM))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    output = weight(n_vocab, N_EMBD, scale=1.0)
    output[: len(CONTROL_TOKENS)] = 0.0  # never chosen: logit 0 among logits of spread ~8
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
