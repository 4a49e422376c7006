"""A flame graph (SVG) from collapsed stacks (`frame;frame;frame count` lines, as `py-spy record --format raw`
writes them): one file gives both the committed text and the picture, with no Perl or extra package.

Frames are laid out like Brendan Gregg's flamegraph.pl: root at the bottom, children sorted by name, width
proportional to samples; each box has a <title> tooltip with its share of all samples.
Run: `python bench/gateway_flamegraph.py in.collapsed out.svg`.
"""

from __future__ import annotations

import sys
import zlib
from html import escape
from pathlib import Path

WIDTH = 1200
ROW = 16
MIN_PX = 0.3  # narrower boxes are not drawn (they add bytes, not information)


class _Node:
    __slots__ = ("children", "count")

    def __init__(self) -> None:
        self.count = 0
        self.children: dict[str, _Node] = {}


def parse(text: str) -> _Node:
    """The call tree of the collapsed stacks."""
    root = _Node()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        node = root
        node.count += n
        for frame in stack.split(";"):
            node = node.children.setdefault(frame, _Node())
            node.count += n
    return root


def _colour(name: str) -> str:
    h = zlib.crc32(name.encode())
    return f"rgb({205 + h % 50},{(h >> 8) % 180 + 40},{(h >> 16) % 50})"


def render(text: str, title: str = "flame graph") -> str:
    """The SVG of the collapsed stacks `text`."""
    root = parse(text)
    total = max(1, root.count)
    scale = WIDTH / total
    boxes: list[str] = []
    depth_max = 0

    def walk(node: _Node, name: str, x: float, depth: int) -> None:
        nonlocal depth_max
        w = node.count * scale
        if w < MIN_PX:
            return
        depth_max = max(depth_max, depth)
        boxes.append(f"{depth}|{x:.2f}|{w:.2f}|{name}|{node.count}")
        cx = x
        for child_name in sorted(node.children):
            child = node.children[child_name]
            walk(child, child_name, cx, depth + 1)
            cx += child.count * scale

    walk(root, "all", 0.0, 0)
    height = (depth_max + 3) * ROW
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" '
        'font-size="11">',
        f'<rect width="100%" height="100%" fill="#f8f8f8"/><text x="4" y="13">{escape(title)} ({total} samples)</text>',
    ]
    for box in boxes:
        depth_s, x_s, w_s, name, count = box.split("|", 4)
        depth, x, w = int(depth_s), float(x_s), float(w_s)
        y = height - (depth + 1) * ROW
        share = 100 * int(count) / total
        label = escape(name)
        chars = int(w / 6.6)
        text_el = ""
        if chars >= 3:
            shown = name if len(name) <= chars else name[: chars - 2] + ".."
            text_el = f'<text x="{x + 2:.2f}" y="{y + 11}">{escape(shown)}</text>'
        out.append(
            f"<g><title>{label} ({count} samples, {share:.2f}%)</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" fill="{_colour(name)}"/>{text_el}</g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def top_frames(text: str, n: int = 25, self_time: bool = True) -> list[tuple[str, float]]:
    """The frames with the most samples (self time: as the leaf; else inclusive), with their share in %."""
    totals: dict[str, int] = {}
    all_samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        all_samples += c
        frames = stack.split(";")
        for frame in [frames[-1]] if self_time else set(frames):
            totals[frame] = totals.get(frame, 0) + c
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [(frame, round(100 * c / max(1, all_samples), 2)) for frame, c in ranked]


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.write_text(render(source.read_text(), title=source.stem))
