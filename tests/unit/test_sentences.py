from parley.realtime.sentences import SentenceChunker


def test_pieces_rejoin_to_the_exact_text() -> None:
    text = "Well, let me see what I can do for you, okay. Your order ships Friday! Anything else?\nBye"
    chunker = SentenceChunker()
    pieces = [p for i in range(0, len(text), 3) for p in chunker.push(text[i : i + 3])]
    pieces += chunker.flush()
    assert "".join(pieces) == text


def test_first_piece_released_at_a_long_enough_clause() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Well, let me see what I can do for you, and then") == [
        "Well, let me see what I can do for you, "
    ]
    # Later pieces wait for a sentence end.
    assert chunker.push(" more, and more, words") == []
    assert chunker.push(" here. Next") == ["and then more, and more, words here. "]


def test_a_long_run_without_punctuation_is_cut_at_a_space() -> None:
    chunker = SentenceChunker()
    pieces = chunker.push("word " * 100)
    assert pieces and all(len(p) <= 241 for p in pieces) and all(p.endswith(" ") for p in pieces)
