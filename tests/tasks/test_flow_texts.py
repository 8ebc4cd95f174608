"""Chat texts, BB-code stripping and dialog ids: what operators and subscribers read."""

from __future__ import annotations

import pytest

from schemas.flows import AccountRef, SubscriberMessage
from tasks.errors import UnknownDialogError
from tasks.flows.texts import NO_ACCOUNT, chat_text, strip_bbcodes
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
