"""Read the key/value metadata of a GGUF file (no tensors), fast.

GGUF layout (little-endian, versions 2 and 3): magic b"GGUF", u32 version, u64 tensor_count, u64 kv_count, then
kv_count records `string key, u32 value_type, value`, where a string is `u64 length, utf-8 bytes` and an array is
`u32 item_type, u64 count, items`. `gguf.GGUFReader` also maps every tensor and builds numpy views per array item,
which takes seconds for a 49k-token vocabulary; this reader takes a fraction of that.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

# value_type -> numpy dtype for fixed-size scalars (GGUF spec: 0..12).
_SCALARS = {
    0: np.dtype("<u1"), 1: np.dtype("<i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"), 4: np.dtype("<u4"),
    5: np.dtype("<i4"), 6: np.dtype("<f4"), 7: np.dtype("<u1"), 10: np.dtype("<u8"), 11: np.dtype("<i8"),
    12: np.dtype("<f8"),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7


class _Cursor:
    """Sequential reader over a bytes buffer that names the file in its errors."""

    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"{self.path}: truncated or corrupt GGUF metadata at byte {self.pos} (wanted {n} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u64()).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, count = self.u32(), self.u64()
            if item_type in _SCALARS:
                dt = _SCALARS[item_type]
                arr = np.frombuffer(self.take(count * dt.itemsize), dtype=dt)
                return [bool(x) for x in arr] if item_type == _BOOL else arr.tolist()
            return [self.value(item_type) for _ in range(count)]
        if vtype in _SCALARS:
            dt = _SCALARS[vtype]
            x = np.frombuffer(self.take(dt.itemsize), dtype=dt)[0].item()
            return bool(x) if vtype == _BOOL else x
        raise ValueError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos} (allowed 0..12)")


def read_gguf_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """All metadata key/values of the GGUF file at `path` as plain Python values (lists for arrays).

    Raises FileNotFoundError if the file is missing and ValueError if it is not a little-endian GGUF v2/v3.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (magic {head[:4]!r}, expected b'GGUF')")
        version, _, kv_count = struct.unpack("<IQQ", head[4:])
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} not supported (allowed 2, 3; big-endian files neither)")
        # Metadata sits before the tensor infos; read in growing chunks until every record parsed.
        size = os.path.getsize(path)
        chunk = min(size, 1 << 24)
        while True:
            f.seek(24)
            cur = _Cursor(f.read(chunk), path)
            try:
                out = {}
                for _ in range(kv_count):
                    key = cur.string()
                    out[key] = cur.value(cur.u32())
                return out
            except ValueError:
                if chunk >= size:
                    raise
                chunk = min(size, chunk * 4)
