"""Dialogue data: reading chat JSONL (OpenAI "messages" and ShareGPT "conversations"), its errors, and the built-in
"assistant that remembers" set, checked by replaying each conversation independently of the generator."""

import functools
import gzip
import json
import re
from collections import defaultdict

import pytest

from transformer_networks.data.dialogue import (
    FACTS,
    ROLES,
    SMALL_TALK,
    Conversation,
    Message,
    chat_split,
    conversation_from_record,
    read_chat,
)
from transformer_networks.data.readers import DataError
from transformer_networks.errors import UserError

OPENAI = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi, I am Ann."},
        {"role": "assistant", "content": "Hello, Ann.", "weight": 1},
        {"role": "user", "content": "Who am I?"},
        {"role": "assistant", "content": "You are Ann."},
    ]
}
SHAREGPT = {
    "id": "x1",
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi, I am Ann."},
        {"from": "gpt", "value": "Hello, Ann."},
        {"from": "user", "value": "Who am I?"},
        {"from": "assistant", "value": "You are Ann."},
    ],
}
EXPECTED = (
    Message("system", "Be brief."),
    Message("user", "Hi, I am Ann."),
    Message("assistant", "Hello, Ann."),
    Message("user", "Who am I?"),
    Message("assistant", "You are Ann."),
)


def write_jsonl(path, records, blank_lines=False):
    sep = "\n\n" if blank_lines else "\n"
    path.write_text(sep.join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


# --- reading -----------------------------------------------------------------------------------------------------


def test_both_formats_and_gzip_read_the_same_conversation(tmp_path):
    openai = read_chat(str(write_jsonl(tmp_path / "a.jsonl", [OPENAI, OPENAI], blank_lines=True)))
    sharegpt = read_chat(str(write_jsonl(tmp_path / "b.jsonl", [SHAREGPT])))
    assert [c.id for c in openai] == ["1", "3"]  # the line number, blank lines counted
    assert openai[0] == Conversation("1", EXPECTED) and sharegpt == [Conversation("1", EXPECTED)]
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(json.dumps(SHAREGPT).encode("utf-8")))
    assert read_chat(str(gz)) == sharegpt
    assert all(not m.needs_context for m in openai[0].messages)  # only built-in data marks it


def test_unicode_content_is_kept_as_written(tmp_path):
    record = {"messages": [{"role": "user", "content": "Grüße  "}, {"role": "assistant", "content": "日本語\n"}]}
    [conversation] = read_chat(str(write_jsonl(tmp_path / "u.jsonl", [record])))
    assert [m.content for m in conversation.messages] == ["Grüße  ", "日本語\n"]


def openai(*messages):
    return {"messages": [{"role": r, "content": c} for r, c in messages]}


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"messages": [', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"turns": []}, "no 'messages' (OpenAI) or 'conversations' (ShareGPT) key"),
        ({"messages": "hi"}, "'messages' must be a list"),
        ({"messages": ["hi", {"role": "assistant", "content": "a"}]}, "message 1: expected a JSON object"),
        ({"messages": [{"content": "x"}]}, "message 1: no 'role' key"),
        (
            openai(("user", "q"), ("tool", "x")),
            "message 2: unknown role 'tool'; expected one of system, user, assistant",
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]},
            "message 2: unknown from 'bot'; expected one of system, human, gpt, user, assistant",
        ),
        ({"messages": [{"role": "user"}]}, "message 1: no 'content' key"),
        ({"messages": [{"role": "user", "content": ["a"]}]}, "message 1: 'content' must be a string, got list"),
        ({"messages": [{"role": "user", "content": None}]}, "'content' must be a string, got NoneType"),
        (openai(("user", "q"), ("assistant", "")), "message 2: 'content' is empty"),
        (openai(("user", " \t\n"), ("assistant", "a")), "message 1: 'content' is empty"),
        ({"conversations": [{"from": "human", "value": " "}]}, "message 1: 'value' is empty"),
        (openai(("system", "s"), ("user", "q")), "no assistant message"),
        (openai(("user", "q"), ("system", "s"), ("assistant", "a")), "message 2: a system message may only come first"),
        (openai(("system", "s"), ("system", "t"), ("assistant", "a")), "message 2: a system message"),
    ],
)
def test_bad_records_are_one_line_errors_naming_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [OPENAI, line])
    with pytest.raises(DataError) as e:
        read_chat(str(path))
    text = str(e.value)
    assert text.startswith(f"{path}: line 2: ") and message in text and "\n" not in text


def test_one_record_may_end_with_a_user_message_and_its_errors_are_value_errors():
    """`conversation_from_record` is the check behind `read_chat` for one record from elsewhere (a conversation to
    reply to): no assistant turn is required, and its errors name no file."""
    assert conversation_from_record(SHAREGPT) == EXPECTED
    assert conversation_from_record(openai(("system", "s"), ("user", "q"))) == (
        Message("system", "s"),
        Message("user", "q"),
    )
    with pytest.raises(ValueError, match=r"^message 2: unknown role 'tool'; expected one of system, user, assistant$"):
        conversation_from_record(openai(("user", "q"), ("tool", "x")))
    with pytest.raises(ValueError, match="^expected a JSON object$"):
        conversation_from_record(["user", "q"])


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_a_file_without_conversations_is_an_error(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match="no conversations"):
        read_chat(str(path))


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_chat(str(tmp_path / "nope.jsonl"))


# --- the built-in set --------------------------------------------------------------------------------------------

FACT_OF = {value: fact.name for fact in FACTS for value in fact.values}
WORD = re.compile(r"[A-Za-z0-9]+")
# which fact a question asks about, from its words (checked in this order: "the name of my pet" is about the pet)
QUESTION_TOPICS = (
    ("pet", "pet"),
    ("colour", "colour"),
    ("food", "food"),
    ("number", "number"),
    ("city", "live|city|home"),
    ("name", "name|Who am I"),
)


@functools.cache
def split(seed=0):
    return chat_split(seed=seed)


def conversations():
    train, test = split()
    return train + test


def words(text):
    return WORD.findall(text)


def facts_in(text):
    """(fact, value) for each fact value named in a message."""
    return [(FACT_OF[w], w) for w in words(text) if w in FACT_OF]


def asked_fact(question):
    return next(name for name, pattern in QUESTION_TOPICS if re.search(pattern, question))


def test_sizes_ids_and_determinism():
    train, test = split()
    assert (len(train), len(test)) == (4000, 400)
    assert [c.id for c in train[:2]] == ["chat-train-00000", "chat-train-00001"]
    assert test[-1].id == "chat-test-00399"
    assert chat_split(seed=0) == (train, test)
    assert chat_split(seed=1)[0][:50] != train[:50]
    small_train, small_test = chat_split(train=10, test=5)
    assert small_train == train[:10] and small_test == test[:5]  # train and test are separate streams
    with pytest.raises(UserError):
        chat_split(train=-1)


def test_fact_vocabularies_are_small_disjoint_single_words():
    all_values = [v for fact in FACTS for v in fact.values]
    assert len(all_values) == len(set(all_values)) == len(FACT_OF)
    assert all(
        12 <= len(fact.values) <= 20 and all(re.fullmatch(r"[A-Za-z0-9]+", v) for v in fact.values) for fact in FACTS
    )
    for user, reply in SMALL_TALK:
        assert not facts_in(user) and not facts_in(reply)


def test_train_and_test_share_no_conversation():
    train, test = split()
    assert not {c.messages for c in train} & {c.messages for c in test}


def test_conversations_alternate_user_and_assistant_after_an_optional_system_message():
    with_system = 0
    for c in conversations():
        roles = [m.role for m in c.messages]
        assert set(roles) <= set(ROLES)
        if roles[0] == "system":
            with_system += 1
            roles = roles[1:]
        assert roles == ["user", "assistant"] * (len(roles) // 2), c.id
        assert 3 <= len(roles) // 2 <= 6, c.id
        assert all(m.content == m.content.strip() and m.content for m in c.messages)
        assert not any(m.needs_context for m in c.messages if m.role != "assistant")
    assert 0.3 < with_system / len(conversations()) < 0.7


def test_conversations_are_short_and_the_vocabulary_small():
    vocabulary = set()
    for c in conversations():
        tokens = [w for m in c.messages for w in words(m.content)]
        assert len(tokens) < 120, c.id
        vocabulary.update(tokens)
    assert len(vocabulary) < 400


def test_every_context_reply_names_the_latest_value_of_a_fact_stated_earlier_and_not_in_the_last_message():
    """An independent replay: the latest value of each fact is whatever value of its vocabulary a user message
    named last; a reply that needs context must name exactly that value of the fact the question asks about, the
    last user message must not name it, and it must have been told at least one exchange earlier."""
    answered_after_update = 0
    for c in conversations():
        latest: dict[str, str] = {}
        told: dict[str, int] = {}  # fact -> index of the user message that last named it
        times_told: dict[str, int] = defaultdict(int)
        for i, m in enumerate(c.messages):
            if m.role == "user":
                for fact, value in facts_in(m.content):
                    latest[fact], told[fact] = value, i
                    times_told[fact] += 1
            elif m.role == "assistant" and m.needs_context:
                question = c.messages[i - 1].content
                assert not facts_in(question), (c.id, question)
                fact = asked_fact(question)
                assert fact in latest, (c.id, question)  # asked only about a fact stated earlier
                assert facts_in(m.content) == [(fact, latest[fact])], (c.id, m.content)
                assert told[fact] < i - 3, (c.id, question)  # at least one exchange in between
                answered_after_update += times_told[fact] > 1
            elif m.role == "assistant":
                # a reply that needs no context names only what the last user message named
                assert set(facts_in(m.content)) <= set(facts_in(c.messages[i - 1].content)), (c.id, m.content)
    assert answered_after_update > 0.1 * sum(m.needs_context for c in conversations() for m in c.messages)


def test_replies_without_context_are_a_function_of_the_last_user_message_and_questions_are_not():
    reply_to: dict[str, set[str]] = defaultdict(set)
    context_reply_to: dict[str, set[str]] = defaultdict(set)
    for c in conversations():
        for user, reply in zip(c.messages, c.messages[1:], strict=False):
            if user.role == "user":
                (context_reply_to if reply.needs_context else reply_to)[user.content].add(reply.content)
    assert all(len(replies) == 1 for replies in reply_to.values())
    assert not set(reply_to) & set(context_reply_to)  # a question is never answered without context
    assert all(len(replies) > 5 for replies in context_reply_to.values())  # the answer is not in the question


def test_a_good_share_of_replies_need_context():
    replies = [m for c in conversations() for m in c.messages if m.role == "assistant"]
    share = sum(m.needs_context for m in replies) / len(replies)
    assert 0.3 <= share <= 0.6
    assert all(any(m.needs_context for m in c.messages) for c in conversations())
