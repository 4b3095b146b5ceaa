"""Has the user finished their turn? An end-of-utterance judgement on the words heard so far.

``semantic_vad`` ends a turn from what was said as well as from silence: a pause after "my number is
five five five" or "I'd like to book a table for" is the user thinking, a pause after "what time do
you open tomorrow" is the end of a question. The recogniser gives no punctuation, so the judgement is
lexical, on the last words of the partial transcript:

* **incomplete**: the utterance ends on a word that cannot end an English sentence (an article, a
  preposition, a conjunction, an auxiliary, a possessive, a subject pronoun, a filler such as "um"),
  or on a run of digits after a cue ("number", "zip", "pin", ...) shorter than such a number is (a
  local phone number has 7 digits, a zip code 5), or on a spelled-out letter sequence;
* **complete**: an utterance ending on a closing word ("thanks", "please", "bye", "yes", "no", ...);
* **incomplete** too when a language model's P(end of sentence | the last two words)
  (:mod:`parley.engines.sentence_end`) is under ``INCOMPLETE_P`` ("... what is the", "... a table for");
* **complete**: a question opened by a question word or an inverted auxiliary whose last words are
  a likely sentence end (``COMPLETE_P`` or more; any, without a model);
* **unknown** otherwise. A likely sentence end alone does not make a statement complete: on noisy or
  misheard audio the recogniser's words ("thigh", "the green room floor") often look like one.

:func:`required_silence_ms` turns that and the session's ``eagerness`` into the silence that ends
the turn; an incomplete utterance waits the longest, the API's maximum (8 s / 4 s / 2 s for
low / medium / high).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


Completion = Literal["complete", "incomplete", "unknown"]
Eagerness = Literal["low", "medium", "high", "auto"]

_INCOMPLETE_ENDINGS = word_set(
    """
    a an the this that these those my your his her its our their whose
    and or but nor so because since although though if unless while whereas than then
    to of for from with without in on at by about into onto over under between through
    after before during until like as per via near toward towards
    is are was were am be been being do does did have has had will would can could shall should
    may might must i we you they he she it there which who whom what where when why how
    um uh er erm ah hmm well also just very really quite more most less least some any called
    """
)
_COMPLETE_ENDINGS = word_set(
    """
    thanks please bye goodbye okay ok yes no yeah yep nope sure right correct exactly
    today tonight tomorrow now later all else too done fine great perfect
    """
)
_QUESTION_OPENERS = word_set(
    "what when where who whom whose why how which can could would will do does did is are was "
    "were should shall may might have has"
)
_DIGITS = word_set(
    "zero oh one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
    "sixty seventy eighty ninety double triple hundred thousand"
)
_NUMBER_CUES: dict[str, int] = {
    **dict.fromkeys(("number", "numbers", "phone", "telephone", "mobile", "cell", "digits"), 7),
    **dict.fromkeys(("account", "order", "card", "reference", "confirmation"), 6),
    **dict.fromkeys(("zip", "postcode", "postal"), 5),
    **dict.fromkeys(("pin", "code"), 4),
    "extension": 3,
}
"""Words that announce a number, with the digits such a number has at least: fewer after the cue
and the number is still being given."""
_LOCAL_PHONE = 7
"""Digits in the shortest (local) phone number."""
_LETTER = re.compile(r"^[a-z]\.?$")

WAITS_MS: dict[str, dict[Completion, int]] = {
    "high": {"complete": 250, "unknown": 1000, "incomplete": 2000},
    "medium": {"complete": 400, "unknown": 1600, "incomplete": 4000},
    "low": {"complete": 700, "unknown": 2500, "incomplete": 8000},
}
"""Silence that ends a turn, by eagerness and judgement; ``auto`` is ``medium``. Only words that read
as finished end a turn quickly: a thinking pause inside a sentence commonly lasts 0.5-1.5 s, and a
recogniser often mishears the words before it, so a turn the judgement cannot place waits longer."""


JUDGE_AFTER_MS = min(waits["complete"] for waits in WAITS_MS.values())
"""A pause is judged once, on the words heard when it has lasted this long (the shortest wait): the
recogniser has caught up with the speech by then, and what it adds later comes from the silence, where
noise is heard as words ("... my license plate is" + noise = "... my life's thigh")."""


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


COMPLETE_P = 0.1
"""P(end of sentence) from which a question reads as finished ("... open tomorrow" 0.34,
"... the capital of france" 0.28, "... the blue one cost" 0.09)."""
INCOMPLETE_P = 0.03
"""P(end of sentence) under which it reads as unfinished ("... a table for" 0.016, "... my phone is
a" 0.007)."""

SentenceEnd = Callable[[Sequence[str]], float]


def judge(text: str, sentence_end: SentenceEnd | None = None) -> Completion:
    """Whether the words so far read as a finished turn; ``sentence_end`` gives P(end of sentence)."""
    words = words_of(text)
    if not words:
        return "unknown"
    last = words[-1]
    if words[-2:] == ["thank", "you"]:
        return "complete"
    digits = _trailing_digits(words)
    if digits:
        cues = [
            _NUMBER_CUES[w]
            for w in words[max(0, len(words) - digits - 4) : len(words) - digits]
            if w in _NUMBER_CUES
        ]
        if cues:
            return "incomplete" if digits < max(cues) else "unknown"
        # "… is five five five": digits read out one by one after "is", too few for a phone number
        # (the cue itself may be misheard); a lone "one" ("the second one") is not a number.
        after_is = len(words) > digits and words[-digits - 1] == "is"
        return "incomplete" if after_is and 2 <= digits < _LOCAL_PHONE else "unknown"
    if len(words) >= 2 and _LETTER.match(last) and _LETTER.match(words[-2]) and last not in ("a", "i"):
        return "incomplete"
    if last in _INCOMPLETE_ENDINGS and not (last in ("you", "it") and len(words) >= 2):
        return "incomplete"
    if last in _COMPLETE_ENDINGS:
        return "complete"
    p = sentence_end(words) if sentence_end is not None else None
    if p is not None and p < INCOMPLETE_P:
        return "incomplete"
    if words[0] in _QUESTION_OPENERS and len(words) >= 3 and (p is None or p >= COMPLETE_P):
        return "complete"
    return "unknown"


def _trailing_digits(words: list[str]) -> int:
    count = 0
    for word in reversed(words):
        if word in _DIGITS or word.isdigit():
            count += len(word) if word.isdigit() else 1
        else:
            break
    return count


def max_wait_ms(eagerness: str) -> int:
    return WAITS_MS[_level(eagerness)]["incomplete"]


def min_wait_ms(eagerness: str) -> int:
    return WAITS_MS[_level(eagerness)]["complete"]


def required_silence_ms(text: str, eagerness: str, sentence_end: SentenceEnd | None = None) -> int:
    return WAITS_MS[_level(eagerness)][judge(text, sentence_end)]


def _level(eagerness: str) -> str:
    return eagerness if eagerness in WAITS_MS else "medium"
