"""Check an artifact's bytes before a native runtime sees them.

A corrupt flatbuffer can crash the interpreter's C++ code and take the whole
Python process (the camera daemon, say) with it. So before loading a `.tflite`
we walk its flatbuffer in pure Python: the "TFL3" identifier, every table,
vector and string offset in bounds, every tensor/buffer/opcode index in range.
Only a file that passes reaches LiteRT (which then runs its own verifier too).
"""

from __future__ import annotations

import struct

from edgecnn.errors import BadInput

TFLITE_IDENTIFIER = b"TFL3"
MAX_RANK = 8


class _Corrupt(Exception):
    pass


class _FlatBuffer:
    """Bounds-checked reads of flatbuffer tables, vectors and scalars."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.n = len(buf)

    def _u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.n:
            raise _Corrupt(f"offset {pos} out of bounds")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def _i32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.n:
            raise _Corrupt(f"offset {pos} out of bounds")
        return struct.unpack_from("<i", self.buf, pos)[0]

    def _u16(self, pos: int) -> int:
        if pos < 0 or pos + 2 > self.n:
            raise _Corrupt(f"offset {pos} out of bounds")
        return struct.unpack_from("<H", self.buf, pos)[0]

    def table(self, pos: int) -> int:
        vt = pos - self._i32(pos)
        vsize = self._u16(vt)
        if vsize < 4 or vsize % 2 or vt + vsize > self.n:
            raise _Corrupt("bad vtable")
        tsize = self._u16(vt + 2)
        if pos + tsize > self.n:
            raise _Corrupt("table runs past the end of the file")
        return pos

    def field(self, table: int, index: int) -> int | None:
        vt = table - self._i32(table)
        vsize = self._u16(vt)
        slot = 4 + 2 * index
        if slot + 2 > vsize:
            return None
        off = self._u16(vt + slot)
        return table + off if off else None

    def deref(self, pos: int) -> int:
        return pos + self._u32(pos)

    def vector(self, table: int, index: int, elem_size: int) -> tuple[int, int]:
        """(start, length) of a vector field, bounds-checked; (0, 0) when absent."""
        f = self.field(table, index)
        if f is None:
            return 0, 0
        v = self.deref(f)
        length = self._u32(v)
        start = v + 4
        if start + length * elem_size > self.n:
            raise _Corrupt("vector runs past the end of the file")
        return start, length

    def tables(self, table: int, index: int) -> list[int]:
        start, length = self.vector(table, index, 4)
        return [self.table(self.deref(start + 4 * i)) for i in range(length)]

    def ints(self, table: int, index: int) -> list[int]:
        start, length = self.vector(table, index, 4)
        return [self._i32(start + 4 * i) for i in range(length)]

    def u32_field(self, table: int, index: int, default: int = 0) -> int:
        f = self.field(table, index)
        return default if f is None else self._u32(f)


def check_tflite_bytes(buf: bytes, name: str = "model") -> None:
    """Raise BadInput unless `buf` is a structurally sound TFLite flatbuffer."""
    if len(buf) < 16:
        raise BadInput(f"{name} is not a TFLite model: only {len(buf)} bytes")
    if buf[4:8] != TFLITE_IDENTIFIER:
        raise BadInput(f"{name} is not a TFLite model (no 'TFL3' file identifier)")
    fb = _FlatBuffer(buf)
    try:
        model = fb.table(fb._u32(0))
        opcodes = fb.tables(model, 1)
        subgraphs = fb.tables(model, 2)
        buffers = fb.tables(model, 4)
        if not subgraphs:
            raise _Corrupt("no subgraphs")
        for b in buffers:
            fb.vector(b, 0, 1)  # data bytes in bounds
        for sg in subgraphs:
            tensors = fb.tables(sg, 0)
            nt = len(tensors)
            for t in tensors:
                shape = fb.ints(t, 0)
                if len(shape) > MAX_RANK:
                    raise _Corrupt(f"tensor of rank {len(shape)}")
                fb.ints(t, 7)
                if fb.u32_field(t, 2) >= max(len(buffers), 1):
                    raise _Corrupt("tensor refers to a missing buffer")
                name_f = fb.field(t, 3)
                if name_f is not None:
                    s = fb.deref(name_f)
                    if s + 4 + fb._u32(s) > fb.n:
                        raise _Corrupt("tensor name runs past the end of the file")
            for idx in fb.ints(sg, 1) + fb.ints(sg, 2):
                if not 0 <= idx < nt:
                    raise _Corrupt("subgraph input/output index out of range")
            for op in fb.tables(sg, 3):
                if fb.u32_field(op, 0) >= len(opcodes):
                    raise _Corrupt("operator refers to a missing opcode")
                for idx in fb.ints(op, 1) + fb.ints(op, 2):
                    if not -1 <= idx < nt:
                        raise _Corrupt("operator tensor index out of range")
    except _Corrupt as e:
        raise BadInput(f"{name} is a corrupt or truncated TFLite model ({e})") from None


def check_onnx_bytes(buf: bytes, name: str = "model") -> None:
    """Cheap sanity check; ONNX Runtime's protobuf parser rejects the rest cleanly."""
    if len(buf) < 2 or buf[0] != 0x08:  # ModelProto starts with field 1 (ir_version, varint)
        raise BadInput(f"{name} is not an ONNX model")
