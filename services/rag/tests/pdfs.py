"""Hostile PDFs for the parser-limit tests, built by hand (no PDF writer is a dependency)."""

from __future__ import annotations

import zlib


def build_pdf(page_streams: list[bytes], *, flate: bool = False) -> bytes:
    """A PDF with one page per content stream (Helvetica); `flate` compresses every stream with FlateDecode."""
    n = len(page_streams)
    font = 3 + 2 * n
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n))
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n)
    for i, stream in enumerate(page_streams):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * i, font)
        )
        data = zlib.compress(stream, 9) if flate else stream
        head = b"<< /Length %d" % len(data) + (b" /Filter /FlateDecode" if flate else b"") + b" >>"
        objects.append(head + b"\nstream\n" + data + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def text_page(text: str) -> bytes:
    """A content stream that shows `text`."""
    return f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()


def bomb_pdf(expanded_bytes: int) -> bytes:
    """One page whose compressed content stream expands to `expanded_bytes` (a few KB on the wire)."""
    return build_pdf([text_page("boom") + b" " * expanded_bytes], flate=True)


def many_pages_pdf(pages: int) -> bytes:
    """`pages` small pages of text."""
    return build_pdf([text_page(f"Page {i} about otters.") for i in range(pages)])
