"""Text extraction (plain, Markdown, HTML, PDF), normalisation and validation of one document."""

from __future__ import annotations

import hashlib
import io
import re
import time
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser

SUPPORTED_TYPES = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}
EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


class DocumentError(Exception):
    """A per-document problem (wrong type, empty, too short/long, unreadable): recorded, the job goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParseLimits:
    """What one document may cost to parse: a PDF bomb or a huge decompression stops here, not in the worker."""

    max_pages: int = 2000
    max_decompressed_bytes: int = 64 * 1024 * 1024  # per stream (pypdf's own limit, lowered from 75 MB)
    max_cpu_s: float = 30.0  # CPU seconds of this thread, checked between pages
    max_chars: int = 2_000_000  # extracted text; stop reading pages once past it


def detect_format(content_type: str | None, filename: str | None) -> str:
    """Map a MIME type or file extension to one of text/markdown/html/pdf, or raise unsupported_type."""
    if content_type:
        base = content_type.split(";")[0].strip().lower()
        if base in SUPPORTED_TYPES:
            return SUPPORTED_TYPES[base]
        if base in ("text", "markdown", "html", "pdf"):
            return base
    if filename:
        for ext, kind in EXTENSIONS.items():
            if filename.lower().endswith(ext):
                return kind
    if content_type and content_type.split(";")[0].strip().lower() not in ("", "application/octet-stream"):
        raise DocumentError("unsupported_type", f"unsupported content type '{content_type}'")
    if filename:
        raise DocumentError("unsupported_type", f"cannot tell the type of '{filename}' (use .txt, .md, .html, .pdf)")
    return "text"


def decode_bytes(data: bytes) -> str:
    """Decode text bytes: BOMs first, then UTF-8, then cp1252 (legacy Windows files), never failing silently."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if b"\x00" in data:
            raise DocumentError("binary_content", "the content looks binary, not text") from None
        return data.decode("cp1252", errors="replace")


class _HTMLText(HTMLParser):
    """Collects visible text and the <title>; block elements become paragraph breaks, headings Markdown."""

    _BLOCK = frozenset(
        [
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "tr",
            "table",
            "section",
            "article",
            "header",
            "footer",
            "blockquote",
            "pre",
            "hr",
        ]
    )
    _SKIP = frozenset(("script", "style", "noscript", "template", "svg", "head"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK or re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def extract(data: bytes | str, fmt: str, limits: ParseLimits | None = None) -> tuple[str, str | None]:
    """Return (text, title found in the document or None); PDFs are parsed within `limits`."""
    if fmt == "pdf":
        if isinstance(data, str):
            raise DocumentError("invalid_pdf", "a PDF must be uploaded as a file, not sent as text")
        return _extract_pdf(data, limits or ParseLimits())
    text = data if isinstance(data, str) else decode_bytes(data)
    if fmt == "html":
        parser = _HTMLText()
        parser.feed(text)
        parser.close()
        return "".join(parser.parts), (parser.title.strip() or None)
    if fmt == "markdown":
        match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
        return text, (match.group(1).strip() if match else None)
    return text, None


def _extract_pdf(data: bytes, limits: ParseLimits) -> tuple[str, str | None]:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PdfReadError

    cap = limits.max_decompressed_bytes
    started = time.thread_time()  # CPU time of this worker thread: other threads' work does not count
    pages: list[str] = []
    chars = 0
    try:
        # pypdf's limits are per stream and per context (a contextvar): this document only, this thread only.
        with apply_configuration(
            zlib_maximum_output_length=cap,
            lzw_maximum_output_length=cap,
            run_length_maximum_output_length=cap,
            jbig2_maximum_output_length=cap,
            brotli_maximum_output_length=cap,
            array_based_stream_maximum_output_length=cap,
            image_maximum_buffer_size=cap,
            maximum_declared_stream_length=cap,
        ):
            reader = PdfReader(io.BytesIO(data))
            count = len(reader.pages)
            if count > limits.max_pages:
                raise DocumentError("too_many_pages", f"the PDF has {count} pages; at most {limits.max_pages}")
            for number, page in enumerate(reader.pages, start=1):
                text = page.extract_text() or ""
                pages.append(text)
                chars += len(text)
                spent = time.thread_time() - started
                if spent > limits.max_cpu_s:
                    raise DocumentError(
                        "parse_time_limit",
                        f"parsing the PDF took over {limits.max_cpu_s:g} CPU seconds (stopped at page {number})",
                    )
                if chars > limits.max_chars:
                    raise DocumentError("document_too_long", f"the PDF has over {limits.max_chars} characters of text")
            title = (reader.metadata.title if reader.metadata else None) or None
    except LimitReachedError as exc:
        raise DocumentError(
            "decompression_limit", f"the PDF expands beyond the parser's limits ({cap} bytes per stream): {exc}"
        ) from None
    except (PdfReadError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DocumentError("invalid_pdf", f"the PDF could not be read: {exc}") from None
    return "\n\n".join(pages), title


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise(text: str) -> str:
    """NFC, no control characters, unified newlines, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text).replace("\u00a0", " ").replace("\t", "    ")
    text = re.sub(r"[ \u2000-\u200b]+\n", "\n", text)
    text = re.sub(r"(?<=\S)[ ]{2,}(?=\S)", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def validate(text: str, min_chars: int, max_chars: int) -> None:
    """Refuse empty, too short or too long documents with a per-document error."""
    if not text:
        raise DocumentError("empty_document", "the document has no text")
    if len(text) < min_chars:
        raise DocumentError("document_too_short", f"the document has {len(text)} characters; at least {min_chars}")
    if len(text) > max_chars:
        raise DocumentError("document_too_long", f"the document has {len(text)} characters; at most {max_chars}")


def content_hash(text: str) -> str:
    """sha256 of the normalised text: the document's identity for deduplication and data versions."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
