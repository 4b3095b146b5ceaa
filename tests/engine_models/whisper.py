"""A tiny Whisper model with random weights, in CTranslate2's format, built without torch.

The directory has what a converted model from the Hugging Face hub has (``model.bin``,
``config.json``, ``vocabulary.json`` and ``tokenizer.json``), so faster-whisper loads it without
downloading anything. Its vocabulary has the exact layout of OpenAI's multilingual (51865 tokens) or
English-only (51864 tokens) models: the ordinary byte-level tokens, then ``<|endoftext|>``,
``<|startoftranscript|>``, the language tokens, the task and marker tokens, then the 1501 timestamp
tokens ``<|0.00|>`` ... ``<|30.00|>``; CTranslate2 takes a vocabulary with an empty token (the
multilingual one's last ordinary token) for a multilingual model. The
ordinary tokens are the 256 byte symbols and filler words (``Ġab``, ``Ġac``...), so random output
decodes to text of space-separated words. The weights are random: the text is garbage, but every
step of loading, feature extraction, decoding and word alignment is the real one.
"""

from __future__ import annotations

import itertools
import json
import string
from pathlib import Path

import numpy as np
import numpy.typing as npt
from ctranslate2.converters import Converter
from ctranslate2.specs import common_spec, transformer_spec, whisper_spec
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

N_MELS = 80
ENCODER_POSITIONS = 1500  # 30 s of 10 ms mel frames, halved by the second convolution
DECODER_POSITIONS = 448
_LANGUAGE_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur "
    "hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si "
    "km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha "
    "ba jw su"
)
LANGUAGES = _LANGUAGE_CODES.split()
"""OpenAI's language tokens, in vocabulary order (the 99 of the models before large-v3)."""
MARKERS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>")
TIMESTAMPS = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))

Array = npt.NDArray[np.float32]


def whisper_vocabulary(multilingual: bool = True) -> tuple[list[str], list[str]]:
    """(ordinary tokens, special tokens) in id order, sized like OpenAI's Whisper vocabularies."""
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = (
        "Ġ" + "".join(letters)
        for size in itertools.count(2)
        for letters in itertools.product(string.ascii_lowercase, repeat=size)
    )
    ordinary = byte_symbols + list(itertools.islice(words, 50256 - len(byte_symbols)))
    if multilingual:
        ordinary.append("")  # the empty token by which CTranslate2 tells a multilingual vocabulary
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in LANGUAGES]
    specials += [*MARKERS, "<|notimestamps|>", *TIMESTAMPS]
    return ordinary, specials


def write_tokenizer(path: Path, ordinary: list[str], specials: list[str]) -> None:
    """A byte-level BPE ``tokenizer.json`` (no merges) whose ids follow ``ordinary + specials``."""
    vocab = {token: index for index, token in enumerate(ordinary)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, normalized=False) for token in specials])
    assert tokenizer.token_to_id(specials[-1]) == len(ordinary) + len(specials) - 1
    tokenizer.save(str(path))


class _RandomWhisperConverter(Converter):  # type: ignore[misc]
    """Fills a :class:`~ctranslate2.specs.whisper_spec.WhisperSpec` with small random weights."""

    def __init__(self, tokens: list[str], d_model: int, heads: int, layers: int, seed: int) -> None:
        self.tokens = tokens
        self.d_model = d_model
        self.heads = heads
        self.layers = layers
        self.rng = np.random.default_rng(seed)

    def _load(self) -> whisper_spec.WhisperSpec:
        d, layers = self.d_model, self.layers
        spec = whisper_spec.WhisperSpec(layers, self.heads, layers, self.heads)
        encoder, decoder = spec.encoder, spec.decoder
        self._conv(encoder.conv1, d, N_MELS)
        self._conv(encoder.conv2, d, d)
        encoder.position_encodings.encodings = self._random(ENCODER_POSITIONS, d)
        self._norm(encoder.layer_norm)
        for layer in encoder.layer:
            self._layer(layer)
        embeddings = self._random(len(self.tokens), d)
        decoder.embeddings.weight = embeddings
        decoder.projection.weight = embeddings  # tied, as in Whisper (saved once, as an alias)
        decoder.position_encodings.encodings = self._random(DECODER_POSITIONS, d)
        self._norm(decoder.layer_norm)
        for layer in decoder.layer:
            self._layer(layer)
            self._attention(layer.attention, self_attention=False)
        spec.register_vocabulary(self.tokens)
        config = spec.config
        eot = self.tokens.index("<|endoftext|>")
        config.suppress_ids = []
        config.suppress_ids_begin = [self.tokens.index("Ġ"), eot]
        config.lang_ids = [self.tokens.index(f"<|{code}|>") for code in LANGUAGES]
        config.alignment_heads = [
            [layer, head] for layer in range(layers // 2, layers) for head in range(self.heads)
        ]
        return spec

    def _random(self, *shape: int) -> Array:
        return (self.rng.standard_normal(shape) * 0.2).astype(np.float32)

    def _conv(self, conv: common_spec.Conv1DSpec, out_channels: int, in_channels: int) -> None:
        conv.weight = self._random(out_channels, in_channels, 3)
        conv.bias = self._random(out_channels)

    def _norm(self, norm: common_spec.LayerNormSpec) -> None:
        norm.gamma = np.ones(self.d_model, dtype=np.float32)
        norm.beta = np.zeros(self.d_model, dtype=np.float32)

    def _linear(self, linear: common_spec.LinearSpec, out_features: int, in_features: int) -> None:
        linear.weight = self._random(out_features, in_features)
        linear.bias = self._random(out_features)

    def _attention(self, attention: object, *, self_attention: bool) -> None:
        d = self.d_model
        self._norm(attention.layer_norm)  # type: ignore[attr-defined]
        linears = attention.linear  # type: ignore[attr-defined]
        if self_attention:  # fused query-key-value, then the output projection
            self._linear(linears[0], 3 * d, d)
        else:  # query, fused key-value over the encoder output, then the output projection
            self._linear(linears[0], d, d)
            self._linear(linears[1], 2 * d, d)
        self._linear(linears[-1], d, d)

    def _layer(self, layer: transformer_spec.TransformerEncoderLayerSpec) -> None:
        self._attention(layer.self_attention, self_attention=True)
        self._norm(layer.ffn.layer_norm)
        self._linear(layer.ffn.linear_0, 4 * self.d_model, self.d_model)
        self._linear(layer.ffn.linear_1, self.d_model, 4 * self.d_model)


def build_whisper_model(
    directory: Path,
    *,
    multilingual: bool = True,
    d_model: int = 64,
    heads: int = 4,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a random Whisper model into ``directory`` (created; must not exist) and return it."""
    ordinary, specials = whisper_vocabulary(multilingual)
    tokens = ordinary + specials
    converter = _RandomWhisperConverter(tokens, d_model, heads, layers, seed)
    converter.convert(str(directory), quantization="int8")
    write_tokenizer(directory / "tokenizer.json", ordinary, specials)
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"feature_size": N_MELS, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30})
    )
    return directory
