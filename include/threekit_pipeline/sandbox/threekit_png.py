"""Deterministic placeholder renders for the threekit-sandbox.

The sandbox has no renderer; each item instead gets a small PNG whose pixels are derived
from the item's name and attribute default values. Same inputs give the same bytes (and so
the same content-addressed file id); any change to those inputs changes the image.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from typing import Any

RENDER_WIDTH = 64
RENDER_HEIGHT = 48


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """Encode 8-bit RGB ``rows`` (each ``width * 3`` bytes) as a PNG file."""
    if len(rows) != height or any(len(row) != width * 3 for row in rows):
        raise ValueError("rows do not match the image size")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every row
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def render_item_png(name: str, configuration: dict[str, Any]) -> bytes:
    """The placeholder render of an item: background and stripes seeded by its content."""
    seed = json.dumps({"name": name, "configuration": configuration}, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    background = digest[0:3]
    stripe = bytes(255 - b for b in background)
    stripe_width = 2 + digest[3] % 6
    # One band per attribute default value, so configurations differ visibly.
    band_colours = [digest[4 + 3 * i : 7 + 3 * i] for i in range(min(len(configuration), 8))]
    stripes = [(x // stripe_width) % 2 == 0 for x in range(RENDER_WIDTH)]

    def row_for(band: bytes | None) -> bytes:
        return b"".join(
            stripe if striped else band if band is not None and x >= RENDER_WIDTH // 2 else background
            for x, striped in enumerate(stripes)
        )

    # Rows only differ by band, so each distinct row is built once.
    built: dict[bytes | None, bytes] = {}
    rows = []
    for y in range(RENDER_HEIGHT):
        band = band_colours[y * len(band_colours) // RENDER_HEIGHT] if band_colours else None
        if band not in built:
            built[band] = row_for(band)
        rows.append(built[band])
    return encode_png(RENDER_WIDTH, RENDER_HEIGHT, rows)
