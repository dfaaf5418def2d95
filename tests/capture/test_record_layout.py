"""sensor/capture/layout.py: one table per record, rendered as C and compiled as a struct."""

from __future__ import annotations

import pytest

from sensor.capture import layout
from sensor.capture.layout import LAYOUTS, c_structs


def test_every_record_is_aligned_and_starts_with_the_header() -> None:
    for name, (kind, fields) in layout.RECORDS.items():
        lay = LAYOUTS[name]
        assert lay.kind == kind
        assert lay.size % 8 == 0
        assert fields[: len(layout.HEADER)] == layout.HEADER
        assert lay.names[0] == "kind"


def test_c_declarations_assert_the_sizes_the_decoder_uses() -> None:
    text = c_structs()
    for name, lay in LAYOUTS.items():
        c_name = name if name in layout.STRUCTS else f"rec_{name}"
        assert f"struct {c_name} {{" in text
        assert f"_Static_assert(sizeof(struct {c_name}) == {lay.size}," in text
    assert "    char comm[16];" in text
    assert "    u8 laddr_raw[16];" in text


def test_a_misaligned_field_is_refused() -> None:
    with pytest.raises(AssertionError, match=r"bad.b at offset 2 is not 8-byte aligned"):
        layout._check_alignment("bad", (("a", "u16", 1), ("b", "u64", 1)))
    with pytest.raises(AssertionError, match="not a multiple of 8"):
        layout._check_alignment("short", (("a", "u32", 1),))


def test_header_decodes_as_packed() -> None:
    lay = LAYOUTS["exit"]
    values = [layout.K_EXIT, 0, 11, 10, 1000, 1000, 0, 0, 1, 123, 456, b"cat".ljust(16, b"\0"), -9, 0]
    rec = dict(zip(lay.names, lay.struct.unpack(lay.struct.pack(*values)), strict=True))
    assert rec["tgid"] == 10 and rec["comm"].rstrip(b"\0") == b"cat" and rec["exit_code"] == -9
    assert (rec["uid"], rec["euid"]) == (1000, 0)


def test_map_rows_pack_by_name_and_refuse_unknown_fields() -> None:
    row = layout.pack("kterm", checks=layout.KC["RES"], res_lo0=-5, res_hi0=7)
    values = dict(zip(LAYOUTS["kterm"].names, LAYOUTS["kterm"].struct.unpack(row), strict=True))
    assert (values["checks"], values["res_lo0"], values["res_hi0"], values["uid_lo0"]) == (1, -5, 7, 0)
    with pytest.raises(KeyError, match="nope"):
        layout.pack("kterm", nope=1)
