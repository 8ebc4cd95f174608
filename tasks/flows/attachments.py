"""Pictures and files in a chat: a subscriber's picture into Bitrix24, an operator's files to the app.

RosDomofon's ``MESSAGES_IN`` carries at most one picture (``imageUrl``, rosdomofon-api.md §4) and its
app shows text only (the REST and Kafka messages have no attachment field). So:

- a subscriber's picture goes to Open Lines as ``message.files [{url, name}]`` (the portal downloads
  it itself, facts doc §11) and to a CRM chat as an ``ATTACH`` link block (``im.message.add``), with
  the URL also in the text so an operator can open it even where attachments are not shown;
- an operator's files reach the subscriber as lines of text: the name, the size and the portal's
  signed ``link`` (it opens without OAuth), one line per file, after the operator's words.

Only ``http``/``https`` URLs are passed on as links: a ``javascript:`` or ``file:`` "picture" is shown
to the operator as inert text instead, never dropped and never clickable.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from schemas.flows import ReplyFile

PICTURE_NAME = "photo.jpg"
NAME_MAX = 50  # the portal keeps the last 50 characters of a file name (facts doc §11)
FILE_MARK = "📎"


def web_url(raw: str | None) -> str | None:
    """``raw`` stripped when it is an absolute http(s) URL with a host, else None."""
    url = (raw or "").strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        return None
    return url


def picture_name(url: str) -> str:
    """The file name Bitrix24 shows: the URL's last path segment, else ``photo.jpg`` (50 chars at most)."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1]).strip()
    return (segment or PICTURE_NAME)[-NAME_MAX:]


def openlines_files(url: str) -> list[dict[str, str]]:
    """``message.files`` of ``imconnector.send.messages`` for one picture."""
    return [{"url": url, "name": picture_name(url)}]


def crm_attach(url: str) -> list[dict[str, Any]]:
    """An ``ATTACH`` block list for ``im.message.add``: one link to the picture."""
    return [{"LINK": {"NAME": picture_name(url), "LINK": url}}]


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit, step in (("МБ", 1024 * 1024), ("КБ", 1024)):
        if size >= step:
            return f" ({size / step:.1f} {unit})"
    return f" ({size} Б)"


def files_text(files: list[ReplyFile]) -> str:
    """One line per operator file for the subscriber's app: ``📎 name (size): link``."""
    return "\n".join(f"{FILE_MARK} {f.name or picture_name(f.link)}{_size(f.size)}: {f.link}" for f in files)


def reply_files(raw: Any) -> list[ReplyFile]:
    """The files of one event message (a list, or the form's ``{"0": {...}}`` map), http(s) links only.

    A file without a usable link cannot be delivered to the app: it is left out (the words still go).
    """
    items = list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    files = []
    for item in items:
        if not isinstance(item, dict):
            continue
        link = web_url(str(item.get("link") or item.get("downloadLink") or ""))
        if link is None:
            continue
        size = str(item.get("size") or "")
        name = str(item.get("name") or "")
        files.append(ReplyFile(name=name, link=link, size=int(size) if size.isdigit() else None))
    return files


__all__ = ["crm_attach", "files_text", "openlines_files", "picture_name", "reply_files", "web_url"]
