"""The end-of-utterance judgement semantic_vad uses."""

from __future__ import annotations

import pytest

from parley.engines import sentence_end
from parley.realtime.turn_completion import judge, max_wait_ms, min_wait_ms, required_silence_ms, words_of


@pytest.mark.parametrize(
    "text",
    [
        "my number is five five five",
        "my phone number is five five five one two three",
        "i would like to book a table for",
        "my email is john at",
        "the order number is",
        "and then i",
        "so um",
        "it's spelled j o",
        "i was wondering if",
        "my zip code is nine four",
        "the pin is one two",
        "my mum bird is five five five",
    ],
)
def test_unfinished_utterances(text: str) -> None:
    assert judge(text) == "incomplete"


@pytest.mark.parametrize(
    "text",
    [
        "what time do you open tomorrow",
        "can you help me",
        "thank you",
        "that's all thanks",
        "yes",
        "no",
        "okay bye",
        "my number is five five five one two three four five six seven",
        "i think the best option is the second one",
        "please change my delivery address",
        "the money is in my savings account",
        "my zip code is nine four one one zero",
    ],
)
def test_finished_utterances(text: str) -> None:
    assert judge(text) in ("complete", "unknown")
    assert judge(text) != "incomplete"


def test_questions_and_closings_are_complete() -> None:
    assert judge("what time do you open tomorrow") == "complete"
    assert judge("that's all thanks") == "complete"
    assert judge("I'd like a pizza") == "unknown"
    assert judge("") == "unknown"
    # "thank" closes only as "thank you": alone it is the start of "thank ... for" (or misheard noise).
    assert judge("i want to thank") != "complete"
    assert judge("thank you") == "complete"


def test_waits_follow_eagerness_and_the_maximums() -> None:
    assert [max_wait_ms(e) for e in ("low", "medium", "high", "auto")] == [8000, 4000, 2000, 4000]
    for eagerness in ("low", "medium", "high", "auto"):
        complete = required_silence_ms("can you help me", eagerness)
        unknown = required_silence_ms("I'd like a pizza", eagerness)
        incomplete = required_silence_ms("my number is five five five", eagerness)
        assert min_wait_ms(eagerness) == complete < unknown < incomplete == max_wait_ms(eagerness)
    assert required_silence_ms("can you help me", "high") < required_silence_ms("can you help me", "low")


def test_the_bundled_language_model_scores_sentence_ends() -> None:
    ends = sentence_end.NgramSentenceEnds()
    finished = ends.probability(words_of("what time do you open tomorrow"))
    assert finished > ends.probability(words_of("I would like to book a table for"))
    assert finished > ends.probability(words_of("my phone is a"))
    assert 0.0 < finished <= 1.0
    assert ends.probability([]) == 0.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("what is the capital of france", "complete"),
        ("where is the nearest pharmacy", "complete"),
        ("please turn off the lights in the kitchen", "unknown"),  # a likely end, but a statement
        ("the reference code is alpha", "unknown"),
        ("what is the", "incomplete"),
        ("I want to change my", "incomplete"),  # the word list says so before the model is asked
        ("my number is five five five", "incomplete"),
    ],
)
def test_the_judgement_reads_the_language_model(text: str, expected: str) -> None:
    assert judge(text, sentence_end.shared().probability) == expected


def test_the_model_makes_a_question_without_a_likely_end_wait() -> None:
    # Without a model any question-word opening reads as finished; the model finds that "... send
    # it" seldom ends a sentence ("... send it to my office"), so the turn waits longer.
    assert judge("can you send it") == "complete"
    assert judge("can you send it", sentence_end.shared().probability) == "unknown"
