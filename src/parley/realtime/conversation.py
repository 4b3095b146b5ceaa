"""The conversation: ordered items in GA wire shape, with their audio kept beside them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.protocol.errors import ProtocolError

ROOT = "root"


@dataclass(eq=False)
class Item:
    """One conversation item. ``data`` is the wire item without audio bytes."""

    data: dict[str, Any]
    audio: dict[int, bytearray] = field(default_factory=dict)
    """Audio bytes per content index, in ``audio_format``."""
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
            for index, audio in self.audio.items():
                item["content"][index]["audio"] = base64.b64encode(bytes(audio)).decode("ascii")
        return item

    def audio_ms(self, index: int) -> float:
        if self.audio_format is None or index not in self.audio:
            return 0.0
        return self.audio_format.duration_ms(len(self.audio[index]))


class Conversation:
    def __init__(self) -> None:
        self.id = ids.conversation_id()
        self._order: list[str] = []
        self._items: dict[str, Item] = {}

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
        return self._order[position - 1] if position > 0 else None

    def delete(self, item_id: str) -> Item:
        item = self.get(item_id)
        self._order.remove(item_id)
        del self._items[item_id]
        return item
