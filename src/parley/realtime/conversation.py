"""The conversation: ordered items in GA wire shape, with their audio kept beside them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.protocol.errors import ProtocolError
from parley.realtime.audio_spill import AudioSpill, Span

ROOT = "root"


@dataclass(eq=False)
class Item:
    """One conversation item. ``data`` is the wire item without audio bytes."""

    data: dict[str, Any]
    audio: dict[int, bytearray] = field(default_factory=dict)
    """Audio bytes per content index, in ``audio_format``, while in memory."""
    spilled: dict[int, Span] = field(default_factory=dict)
    """Audio per content index that the conversation moved to its spill file (see :mod:`.audio_spill`)."""
    spill: AudioSpill | None = None
    audio_format: AudioFormat | None = None
    heard: dict[int, str] = field(default_factory=dict)
    """What the recogniser heard in an ``input_audio`` part, for the model's context even when the
    client did not ask for transcription events."""
    spoken_marks: list[tuple[float, int]] = field(default_factory=list)
    """For assistant audio: (audio ms at the end of a spoken piece, transcript length then), so a
    truncation keeps exactly the transcript of what was heard."""

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @property
    def role(self) -> str | None:
        role = self.data.get("role")
        return str(role) if role is not None else None

    def wire(self, *, with_audio: bool = False) -> dict[str, Any]:
        item = dict(self.data)
        if "content" in item:
            item["content"] = [dict(part) for part in item["content"]]
        if with_audio:
            for index in self.audio_indices():
                item["content"][index]["audio"] = base64.b64encode(self.audio_bytes(index)).decode("ascii")
        return item

    def audio_indices(self) -> list[int]:
        return sorted({*self.audio, *self.spilled})

    def has_audio(self, index: int) -> bool:
        return index in self.audio or index in self.spilled

    def audio_bytes(self, index: int) -> bytes:
        if index in self.spilled:
            assert self.spill is not None
            return self.spill.read(self.spilled[index])
        return bytes(self.audio[index])

    def audio_ms(self, index: int) -> float:
        if self.audio_format is None or not self.has_audio(index):
            return 0.0
        length = self.spilled[index][1] if index in self.spilled else len(self.audio[index])
        return self.audio_format.duration_ms(length)

    def unspill(self) -> None:
        """Bring spilled audio back into memory (to change it)."""
        for index in list(self.spilled):
            self.audio[index] = bytearray(self.audio_bytes(index))
            del self.spilled[index]

    def audio_in_memory(self) -> int:
        return sum(len(audio) for audio in self.audio.values())


KEEP_RECENT = 2
"""The newest items' audio stays in memory whatever the budget (a turn in progress works on it)."""
FINISHED = ("completed", "incomplete")


class Conversation:
    def __init__(self, spill: AudioSpill | None = None) -> None:
        self.id = ids.conversation_id()
        self._order: list[str] = []
        self._items: dict[str, Item] = {}
        self.spill = spill
        """Where audio beyond the memory budget goes; None: all audio stays in memory."""

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def items(self) -> list[Item]:
        return [self._items[i] for i in self._order]

    def get(self, item_id: str, *, param: str = "item_id") -> Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise ProtocolError(
                "item_not_found", f"Item with item_id '{item_id}' not found in the conversation.", param=param
            ) from None

    def last_id(self) -> str | None:
        return self._order[-1] if self._order else None

    def previous_id(self, item_id: str) -> str | None:
        index = self._order.index(item_id)
        return self._order[index - 1] if index > 0 else None

    def check_insert(self, item_id: str, previous_item_id: str | None) -> None:
        if item_id in self._items:
            raise ProtocolError(
                "item_already_exists", f"Item with id '{item_id}' already exists.", param="item.id"
            )
        if previous_item_id not in (None, ROOT) and previous_item_id not in self._items:
            raise ProtocolError(
                "item_not_found",
                f"Previous item with item_id '{previous_item_id}' not found in the conversation.",
                param="previous_item_id",
            )

    def insert(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Add ``item`` after ``previous_item_id`` (``root``: first; None: last).
        Returns the id of the item now before it."""
        self.check_insert(item.id, previous_item_id)
        if previous_item_id is None:
            position = len(self._order)
        elif previous_item_id == ROOT:
            position = 0
        else:
            position = self._order.index(previous_item_id) + 1
        self._order.insert(position, item.id)
        self._items[item.id] = item
        self.keep_audio_within_budget()
        return self._order[position - 1] if position > 0 else None

    def keep_audio_within_budget(self) -> None:
        """Spill the audio of the oldest finished items until what is in memory fits the budget."""
        spill = self.spill
        if spill is None:
            return
        items = self.items()
        held = sum(item.audio_in_memory() for item in items)
        for item in items[:-KEEP_RECENT]:
            if held <= spill.limit_bytes:
                return
            if not item.audio or item.data.get("status") not in FINISHED:
                continue
            held -= item.audio_in_memory()
            item.spill = spill
            for index, audio in item.audio.items():
                item.spilled[index] = spill.write(bytes(audio))
            item.audio.clear()

    def delete(self, item_id: str) -> Item:
        item = self.get(item_id)
        self._order.remove(item_id)
        del self._items[item_id]
        return item
