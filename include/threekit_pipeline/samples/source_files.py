"""Sample source files (textures, photos, a 3D model) as agencies drop them on FTP.

Real, valid files: PNG textures and a binary glTF (``.glb``) model, deterministic by name so
the same demo run uploads the same bytes (and Threekit's content-addressed files service
stores them once).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path


def png_bytes(width: int, height: int, seed: str) -> bytes:
    """A small RGB PNG whose colours derive from ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += bytes(((digest[0] + x) % 256, (digest[1] + y) % 256, digest[2]))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")


def glb_bytes(name: str) -> bytes:
    """A minimal valid binary glTF 2.0 file: one triangle."""
    positions = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    gltf = {
        "asset": {"version": "2.0", "generator": "threekit-pipeline samples"},
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "buffers": [{"byteLength": len(positions)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions)}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]}
        ],
    }
    json_chunk = json.dumps(gltf, separators=(",", ":")).encode()
    json_chunk += b" " * (-len(json_chunk) % 4)
    bin_chunk = positions + b"\x00" * (-len(positions) % 4)
    body = (
        struct.pack("<I4s", len(json_chunk), b"JSON") + json_chunk + struct.pack("<I4s", len(bin_chunk), b"BIN\x00") + bin_chunk
    )
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def generate_source_files(out_dir: Path, stamp: str = "20261123") -> list[Path]:
    """Write a few textures, a product photo and a 3D model into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        f"fabric_linen_oat_{stamp}.png": png_bytes(64, 64, "fabric linen oat"),
        f"fabric_velvet_teal_{stamp}.png": png_bytes(64, 64, "fabric velvet teal"),
        f"wood_oak_natural_{stamp}.png": png_bytes(64, 64, "wood oak natural"),
        f"photo_sofa_oslo_{stamp}.png": png_bytes(128, 96, "photo sofa oslo"),
        f"model_chair_bergen_{stamp}.glb": glb_bytes("chair bergen"),
    }
    paths = []
    for name, data in files.items():
        path = out_dir / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        paths.append(path)
    return paths
