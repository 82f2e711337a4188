"""A report as a list of blocks, rendered twice: Markdown (images by relative path) and self-contained HTML.

The HTML has no external reference of any kind: PNGs are inlined as base64 ``data:`` URIs, the style sheet is
inline, there is no script. Every string is escaped on the way out (``html.escape`` for HTML; ``|``, ``<``, ``>``,
``&`` and backticks in Markdown), because run names, labels and config values come from files and are untrusted.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
from collections.abc import Sequence

STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
         "th:first-child,td:first-child{text-align:left}th{background:#eee}img{max-width:100%}"
         "pre{background:#f6f6f6;padding:8px;overflow-x:auto}")


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclasses.dataclass(frozen=True)
class Image:
    file: str  # a PNG's name, relative to the report's directory
    alt: str


@dataclasses.dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Table | Image | Code


def escape_markdown(text: str) -> str:
    """Inline Markdown text that cannot break a table or inject markup."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + escape_markdown(b.text), ""]
        elif isinstance(b, Paragraph):
            out += [escape_markdown(b.text), ""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(escape_markdown(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(escape_markdown(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Image):
            out += [f"![{escape_markdown(b.alt)}]({b.file})", ""]
        elif isinstance(b, Code):
            out += ["```", b.text.replace("```", "'''"), "```", ""]
    return "\n".join(out)


def _data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def to_html(blocks: Sequence[Block], base_dir: str, title: str) -> str:
    """One HTML page; images are read from ``base_dir`` and inlined."""
    e = html.escape
    out = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">", f"<title>{e(title)}</title>",
           f"<style>{STYLE}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 1), 6)
            out.append(f"<h{level}>{e(b.text)}</h{level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.header) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows]
            out.append("</tbody></table>")
        elif isinstance(b, Image):
            out.append(f"<p><img src=\"{_data_uri(os.path.join(base_dir, b.file))}\" alt=\"{e(b.alt)}\"></p>")
        elif isinstance(b, Code):
            out.append(f"<pre>{e(b.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_document(directory: str, stem: str, blocks: Sequence[Block], title: str) -> tuple[str, str]:
    """Write ``<stem>.md`` and ``<stem>.html`` into ``directory``; returns both paths."""
    md_path, html_path = os.path.join(directory, stem + ".md"), os.path.join(directory, stem + ".html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(to_markdown(blocks))
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(to_html(blocks, directory, title))
    return md_path, html_path
