"""Resolving a Realtime API voice name (``alloy``, ``marin``...) to one of a TTS engine's own voices.

The order, the same for every engine: the operator's ``PARLEY_TTS_VOICE_MAP`` entry for that engine,
then the engine's built-in table, then the name itself when the engine has a voice of that name, and
finally the engine's default voice.
"""

from __future__ import annotations

from collections.abc import Collection


def resolve_voice(
    api_voice: str,
    *,
    engine: str,
    settings_map: dict[str, dict[str, str]],
    builtin: dict[str, str],
    available: Collection[str],
    default: str,
) -> str:
    """The engine voice to speak ``api_voice`` with.

    ``settings_map`` is ``settings.tts_voice_map`` (keyed by engine name), ``builtin`` the engine's
    own API-voice table, ``available`` the engine's voice names (may be empty when unknown) and
    ``default`` the voice used when nothing else matches.
    """
    mapped = settings_map.get(engine, {}).get(api_voice)
    if mapped:
        return mapped
    if api_voice in builtin:
        return builtin[api_voice]
    if api_voice in available:
        return api_voice
    return default
