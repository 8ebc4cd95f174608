"""Chat texts, BB-code stripping, dialog ids, inert subscriber text, attachments and reply parts: what
operators and subscribers read."""

from __future__ import annotations

import re

import pytest

from schemas.flows import AccountRef, OperatorReplyPayload, PostToChatPayload, SubscriberMessage
from tasks.errors import UnknownDialogError
from tasks.flows import attachments, chat, openlines
from tasks.flows.operator_reply import reply_text
from tasks.flows.reply_parts import split_reply
from tasks.flows.texts import (
    NO_ACCOUNT,
    OUR_TAG,
    UNUSABLE_PICTURE,
    WORD_JOINER,
    chat_text,
    inert,
    sender_label,
    strip_bbcodes,
)
from tasks.state import subscribers


def _message(text: str = "Домофон не работает") -> SubscriberMessage:
    return SubscriberMessage(
        message_id="MESSAGES_IN_SK_SB:0:1", abonent_id=5, phone="8 913 111-22-33", text=text
    )


def test_chat_text_names_the_sender_and_account() -> None:
    account = AccountRef(account_id=7, abonent_id=5, phone="79131112233", number="0100000007", blocked=True)
    text = chat_text(_message(), account)
    assert text.startswith("[b]+79131112233, л/с 0100000007 (заблокирован)[/b][br]")
    assert text.endswith("Домофон не работает")


def test_chat_text_marks_a_subscriber_without_account() -> None:
    assert f"+79131112233, {NO_ACCOUNT}" in chat_text(_message(), None)
    assert "(пустое сообщение)" in chat_text(_message(""), None)


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("[b]Иван Петров:[/b][br] Здравствуйте!", "Иван Петров:\nЗдравствуйте!"),
        ("[B]Op:[/B][BR]see [url=https://x.ru]link[/url] [i]now[/i]", "Op:\nsee link now"),
        ("[user=12]Anna[/user], [color=#ff0000]red[/color]", "Anna, red"),
        ("keep [1] and a[b]c", "keep [1] and ac"),
        ("[b][/b]", ""),
    ],
)
def test_strip_bbcodes(raw: str, plain: str) -> None:
    assert strip_bbcodes(raw) == plain


def test_dialog_ids_round_trip_and_reject_foreign_chats() -> None:
    assert subscribers.abonent_of_dialog(subscribers.dialog_id(1574870)) == 1574870
    with pytest.raises(UnknownDialogError, match="telegram-5"):
        subscribers.abonent_of_dialog("telegram-5")


def test_a_text_that_fits_is_one_part_and_a_longer_one_ordered_parts_that_fit() -> None:
    from tasks.flows.texts import MESSAGE_LIMIT, chat_parts

    short = _message("коротко")
    assert chat_parts(short, None) == [chat_text(short, None)]
    words = " ".join(f"слово{i}" for i in range(9000))  # ~ 90,000 characters
    unbroken = "x" * 45_000  # no space to cut at: cut hard
    for body in (words, unbroken):
        parts = chat_parts(_message(body), None)
        n = len(parts)
        assert n >= 3 and all(len(part) <= MESSAGE_LIMIT for part in parts)
        bodies = []
        for i, part in enumerate(parts, 1):
            head, _, rest = part.partition("[br]")
            assert head.endswith(f"({i}/{n})[/b]") and "+79131112233" in head
            bodies.append(rest)
        assert "".join(bodies) == body  # nothing lost, nothing added, in order
    assert all(p.endswith(" ") for p in chat_parts(_message(words), None)[:-1])  # cut between words


# --- Subscriber text is inert (issue 16 item 3) -----------------------------------------------------

HOSTILE = [
    "[URL=https://evil.example/pay]Оплатите долг[/URL]",
    "[url]https://evil.example[/url]",
    "[SEND=/close]Нажмите, чтобы закрыть диалог[/SEND]",
    "[PUT=Пароль от домофона: ]подставить[/PUT]",
    "[CALL=+79990000000]позвонить[/CALL]",
    "[B]+79130000001, л/с 0100000001[/B][BR]сообщение от другого абонента",
    "[USER=1]Администратор[/USER], [CHAT=5]чат[/CHAT]",
    "[img]https://evil.example/x.png[/img] [color=red]красный[/color] [size=30]крупно[/size]",
    "[[b]]двойные[[/b]] и [/b] и [",
    "rdb24:MESSAGES_IN_SK_SB:0:1 ",
    "[i][size=8]rdb24:MESSAGES_IN_SK_SB:0:1[/size][/i]",
    "RDB24:MESSAGES_IN_SK_SB:0:1",
    "уже с невидимым [\u2060b] символом",
]
LIVE_TAG = re.compile(r"\[/?[A-Za-z*]")


@pytest.mark.parametrize("typed", HOSTILE)
def test_inert_text_loses_nothing_renders_nothing_and_cannot_carry_our_tag(typed: str) -> None:
    shown = inert(typed)
    assert shown.replace(WORD_JOINER, "") == typed.replace(WORD_JOINER, "")  # every typed character
    assert shown.count(WORD_JOINER) >= typed.count("[")
    assert LIVE_TAG.search(shown) is None
    assert OUR_TAG not in shown.lower()


def _forging(message_id: str, text: str, image_url: str | None = None) -> PostToChatPayload:
    message = SubscriberMessage(
        message_id=message_id, abonent_id=5, phone="79131112233", text=text, image_url=image_url
    )
    return PostToChatPayload(phone="79131112233", abonent_id=5, message=message, contact_id=3)


def _crm_post(payload: PostToChatPayload) -> str:
    """The CRM chat text of the message's (first) part, picture line included."""
    return chat._crm_chat_text(chat.message_parts(payload)[0], attachments.web_url(payload.message.image_url))


@pytest.mark.parametrize("typed", HOSTILE)
def test_hostile_text_is_inert_in_both_chat_modes(typed: str) -> None:
    payload = _forging("MESSAGES_IN_SK_SB:0:2", typed)
    sender = f"[b]{sender_label(payload.message.phone, None)}[/b][br]"
    # Open Lines: the connector message's text.
    openline = openlines.connector_message(payload.message, None, chat_text(payload.message, None))
    assert openline.message.text is not None and openline.message.text.startswith(sender)
    assert LIVE_TAG.search(openline.message.text.removeprefix(sender)) is None
    # CRM chat: our sender line, the inert words, our tag; nothing live in between.
    posted = _crm_post(payload)
    tag = chat._crm_tag("MESSAGES_IN_SK_SB:0:2")
    assert posted.startswith(sender) and posted.endswith(f"[br]{tag}")
    assert LIVE_TAG.search(posted.removeprefix(sender).removesuffix(f"[br]{tag}")) is None


def test_crm_tag_cannot_be_forged_by_another_messages_text() -> None:
    """Message 2's words carry message 1's tag, bare and wrapped: message 1's post is not "found"."""
    victim = "MESSAGES_IN_SK_SB:0:1"
    forged = f"rdb24:{victim} и [i][size=8]rdb24:{victim}[/size][/i]"
    forger_post = _crm_post(_forging("MESSAGES_IN_SK_SB:0:2", forged))
    assert not chat._has_crm_tag(forger_post, victim)
    assert chat._has_crm_tag(forger_post, "MESSAGES_IN_SK_SB:0:2")
    own = _crm_post(_forging(victim, "да"))
    assert chat._has_crm_tag(own, victim) and not chat._has_crm_tag(own, "MESSAGES_IN_SK_SB:0:10")
    assert not chat._has_crm_tag(_crm_post(_forging("MESSAGES_IN_SK_SB:0:10", "x")), victim)


# --- Pictures and files (items 1 and 2) ----------------------------------------------------------------


def test_a_picture_goes_to_open_lines_as_a_file_and_to_a_crm_chat_as_a_link() -> None:
    url = "https://cdn.rosdomofon.example/photos/%D0%B4%D0%BE%D0%BC%D0%BE%D1%84%D0%BE%D0%BD.jpg"
    payload = _forging("MESSAGES_IN_SK_SB:0:3", "", image_url=url)
    item = openlines.connector_message(payload.message, None, chat_text(payload.message, None))
    assert item.message.files == [{"url": url, "name": "домофон.jpg"}]
    assert item.message.text is not None and item.message.text.endswith("(фото)")
    assert attachments.crm_attach(url) == [{"LINK": {"NAME": "домофон.jpg", "LINK": url}}]
    assert f"{chat.PICTURE_LINE} {url}" in _crm_post(payload)


@pytest.mark.parametrize("raw", ["javascript:alert(1)", "file:///etc/passwd", "ftp://x/y.png", "https://"])
def test_a_picture_that_is_not_a_web_link_is_shown_inert_never_linked(raw: str) -> None:
    payload = _forging("MESSAGES_IN_SK_SB:0:4", "смотрите", image_url=raw)
    item = openlines.connector_message(payload.message, None, chat_text(payload.message, None))
    assert item.message.files is None
    assert item.message.text is not None and UNUSABLE_PICTURE in item.message.text
    assert chat.PICTURE_LINE not in _crm_post(payload)


def test_operator_files_become_lines_the_app_shows_and_a_files_only_reply_has_text() -> None:
    form_files = {
        "0": {"name": "схема.pdf", "link": "https://portal.example/~a1", "size": "2097152"},
        "1": {"name": "фото.jpg", "link": "", "downloadLink": "https://portal.example/d/2", "size": "512"},
        "2": {"name": "bad", "link": "javascript:x"},
    }
    files = attachments.reply_files(form_files)
    assert [f.link for f in files] == ["https://portal.example/~a1", "https://portal.example/d/2"]
    payload = OperatorReplyPayload(
        connector="rosdomofon", line="1", chat_id="abonent-5", im_chat_id=1, im_message_id=2, text="",
        files=files,
    )  # fmt: skip
    assert reply_text(payload) == (
        "📎 схема.pdf (2.0 МБ): https://portal.example/~a1\n📎 фото.jpg (512 Б): https://portal.example/d/2"
    )
    with_words = payload.model_copy(update={"text": "[b]Анна:[/b][br] Вот схема"})
    assert reply_text(with_words).startswith("Анна:\nВот схема\n📎 схема.pdf")


# --- Long replies (item 4) ---------------------------------------------------------------------------


def test_a_reply_that_fits_is_one_part_without_a_number() -> None:
    assert split_reply("коротко", 100) == ["коротко"]


def test_a_long_reply_is_split_into_ordered_parts_within_the_limit_losing_no_words() -> None:
    text = "\n".join(f"строка {n} " + "слово " * 30 for n in range(40))
    parts = split_reply(text, 500)
    assert len(parts) > 1 and all(len(p) <= 500 for p in parts)
    assert [p.split(" ", 1)[0] for p in parts] == [f"({n}/{len(parts)})" for n in range(1, len(parts) + 1)]
    rejoined = " ".join(p.split(" ", 1)[1] for p in parts)
    assert rejoined.split() == text.split()
    assert split_reply(text, 500) == parts  # deterministic: a redelivered task sends the same parts


def test_a_reply_without_spaces_is_cut_mid_word() -> None:
    parts = split_reply("я" * 1000, 300)
    assert all(len(p) <= 300 for p in parts)
    assert "".join(p.split(" ", 1)[1] for p in parts) == "я" * 1000


def test_a_long_texts_picture_goes_with_its_first_part_only_in_both_chat_modes() -> None:
    url = "https://cdn.rosdomofon.example/p/long.jpg"
    payload = _forging("MESSAGES_IN_SK_SB:0:5", " ".join(f"слово{i}" for i in range(9000)), image_url=url)
    parts = chat.message_parts(payload)
    assert len(parts) >= 3 and [p.first for p in parts] == [True] + [False] * (len(parts) - 1)
    items = [
        openlines.connector_message(payload.message, None, p.text, message_id=p.post_id, with_picture=p.first)
        for p in parts
    ]
    assert [i.message.files for i in items] == [[{"url": url, "name": "long.jpg"}]] + [None] * (
        len(parts) - 1
    )
    crm = [chat._crm_chat_text(p, url if p.first else None) for p in parts]
    assert [f"{chat.PICTURE_LINE} {url}" in t for t in crm] == [True] + [False] * (len(parts) - 1)
    assert all(chat._has_crm_tag(t, p.post_id) for t, p in zip(crm, parts, strict=True))
