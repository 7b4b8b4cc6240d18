"""Dialogue data: multi-turn chat conversations read from JSONL, and a built-in "assistant that remembers" set.

    read_chat(path)      JSONL (`.gz` accepted), one conversation per line, in either of the two common layouts:
                           {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
                               (OpenAI fine-tuning files, Hugging Face chat datasets)
                           {"conversations": [{"from": "system" | "human" | "gpt", "value": "..."}, ...]}
                               (ShareGPT; "user" and "assistant" are accepted in "from" too)
                         Blank lines are skipped; other keys (an "id", a message's "weight") are ignored. A
                         conversation's id is its line number ("3"). Message contents are kept exactly as written.
    conversation_from_record(record)   the messages of one decoded record (no file; a `ValueError` if malformed)
    chat_split()         the built-in set described below: (train, test) lists of `Conversation`s

Every conversation holds at least one assistant message, and a system message only as its first message. Anything
else - invalid JSON, a record or message that is not an object, neither key, an unknown role, a content that is
missing, not a string or blank, no assistant turn, a system message after the first - is a one-line `DataError`
naming the file and line. A file without conversations is an error too.

The built-in world: a user tells a personal assistant facts about themselves and later asks about them. Six kinds
of fact, each from a small fixed vocabulary (`FACTS`): a name (16 values), a pet's name (14), a favourite colour
(12), a city (14), a number to remember (16) and a favourite food (12); the vocabularies share no word. Each
conversation is an optional system message (half of them; two variants) and 3 to 6 user/assistant exchanges:
    statement  "My name is Alice." / "I live in Oslo." / "Please remember the number 42." (2-3 phrasings each)
               -> "Nice to meet you, Alice." / "Got it: you live in Oslo." / "Got it: your number is 42."
    update     "Actually, I moved to Rome." (only of a fact already stated, always to another value)
               -> "Okay, updated: you live in Rome."
    small talk "Thanks!" -> "You are welcome." / "How are you?" -> "I am fine, thank you." (ten fixed pairs)
    question   "Where do I live?" / "Remind me of my number." (2-3 phrasings each)
               -> "You live in Rome." / "Your number is 42."
Every question asks about a fact stated earlier in the same conversation, at least one exchange before it (other
statements, small talk or questions come between), and its answer is the fact's latest value. `needs_context`
marks exactly the answers to questions: the reply depends on an earlier turn, not only on the last user message,
which never contains the fact. Every other reply is a fixed function of the last user message alone. Replies are
deterministic (one right reply, for exact-match evaluation); about 45% of assistant replies need context.

Sizes: `chat_split` gives 4,000 training and 400 test conversations by default, of 3-6 exchanges and about 20 to
90 words each (under 120); the whole set uses about 200 distinct words. Train and test come from separate seeded
streams, and a test conversation whose messages also occur in the training set is replaced by another, so the two
share none. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .readers import DataError, read_lines

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str
    # built-in data only: this assistant reply depends on an earlier turn, not only on the last user message
    needs_context: bool = False


@dataclass(frozen=True)
class Conversation:
    id: str  # the line number as a string ("3") for files; "chat-{split}-{n:05d}" for built-in data
    messages: tuple[Message, ...]


# --- reading -------------------------------------------------------------------------------------------------------


def read_chat(path: str | Path) -> list[Conversation]:
    """The conversations of a chat JSONL file (OpenAI "messages" or ShareGPT "conversations" lines), in file order."""
    conversations = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        messages = parse_chat_line(line, where)
        if not any(m.role == "assistant" for m in messages):
            raise DataError(f"{where}: no assistant message")
        conversations.append(Conversation(str(number), messages))
    if not conversations:
        raise DataError(f"{path}: no conversations")
    return conversations


def parse_chat_line(line: str, where: str) -> tuple[Message, ...]:
    """The messages of one JSONL line; anything malformed is a one-line `DataError` starting with `where` (the file
    and line). Every check of `read_chat` but the assistant turn (a conversation to reply to has none yet)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON: {e.msg}") from None
    try:
        return conversation_from_record(record)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None


def conversation_from_record(record: Any) -> tuple[Message, ...]:
    """The checked messages of one decoded JSON record in either layout. Everything `read_chat` checks but the
    assistant turn (a conversation to be replied to ends with a user message) is a `ValueError` whose one-line
    message names no file: the caller says where the record came from."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    if "messages" in record:
        return _messages(record["messages"], "messages", "role", "content", {r: r for r in ROLES})
    if "conversations" in record:
        return _messages(record["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    raise ValueError("no 'messages' (OpenAI) or 'conversations' (ShareGPT) key")


def _messages(raw: Any, key: str, role_key: str, content_key: str, roles: dict[str, str]) -> tuple[Message, ...]:
    """Checked messages from a list of {role_key, content_key} objects; `roles` maps the file's role names to ours."""
    if not isinstance(raw, list):
        raise ValueError(f"{key!r} must be a list of messages, got {type(raw).__name__}")
    messages = []
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"message {i}: expected a JSON object, got {type(item).__name__}")
        if role_key not in item:
            raise ValueError(f"message {i}: no {role_key!r} key")
        role = item[role_key]
        if not isinstance(role, str) or role not in roles:
            raise ValueError(f"message {i}: unknown {role_key} {role!r}; expected one of {', '.join(roles)}")
        if content_key not in item:
            raise ValueError(f"message {i}: no {content_key!r} key")
        content = item[content_key]
        if not isinstance(content, str):
            raise ValueError(f"message {i}: {content_key!r} must be a string, got {type(content).__name__}")
        if not content.strip():
            raise ValueError(f"message {i}: {content_key!r} is empty")
        if roles[role] == "system" and i != 1:
            raise ValueError(f"message {i}: a system message may only come first")
        messages.append(Message(roles[role], content))
    return tuple(messages)


# --- the built-in set ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One kind of fact the user can tell the assistant. Templates hold "{v}" where the value goes."""

    name: str
    values: tuple[str, ...]  # single words, shared with no other fact
    statements: tuple[str, ...]  # the user states it
    acknowledgement: str  # the assistant's reply to a statement
    updates: tuple[str, ...]  # the user changes it ("Actually, ...")
    questions: tuple[str, ...]  # the user asks about it (no value in them)
    answer: str  # the reply to a question, and (lowercased first letter) to an update


FACTS = (
    Fact(
        "name",
        ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry")
        + ("Irene", "Jack", "Kate", "Leo", "Mia", "Nora", "Oscar", "Paul"),
        ("My name is {v}.", "I am {v}.", "Call me {v}."),
        "Nice to meet you, {v}.",
        ("Actually, my name is {v}.", "Actually, please call me {v}."),
        ("What is my name?", "Do you remember my name?", "Who am I?"),
        "Your name is {v}.",
    ),
    Fact(
        "pet",
        ("Rex", "Max", "Bella", "Luna", "Charlie", "Daisy", "Milo", "Coco")
        + ("Buddy", "Rocky", "Tiger", "Lucky", "Simba", "Oreo"),
        ("My pet is called {v}.", "I have a pet named {v}."),
        "Got it: your pet is called {v}.",
        ("Actually, my pet is called {v}.",),
        ("What is my pet called?", "What is the name of my pet?"),
        "Your pet is called {v}.",
    ),
    Fact(
        "colour",
        ("red", "blue", "green", "yellow", "purple", "orange", "pink", "black", "white", "brown", "grey", "silver"),
        ("My favourite colour is {v}.", "I really like the colour {v}."),
        "Got it: your favourite colour is {v}.",
        ("Actually, my favourite colour is {v}.", "Actually, I like {v} more."),
        ("What colour did I say I like?", "What is my favourite colour?"),
        "Your favourite colour is {v}.",
    ),
    Fact(
        "city",
        ("Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Lisbon")
        + ("Dublin", "Oslo", "Prague", "Tokyo", "Cairo", "Sydney", "Toronto"),
        ("I live in {v}.", "My home is in {v}."),
        "Got it: you live in {v}.",
        ("Actually, I moved to {v}.",),
        ("Where do I live?", "Which city is my home?"),
        "You live in {v}.",
    ),
    Fact(
        "number",
        ("3", "7", "12", "15", "19", "23", "28", "31", "36", "42", "47", "55", "64", "71", "88", "99"),
        ("Please remember the number {v}.", "Remember the number {v} for me."),
        "Got it: your number is {v}.",
        ("Actually, the number is {v}.",),
        ("Remind me of my number.", "What number did I give you?"),
        "Your number is {v}.",
    ),
    Fact(
        "food",
        ("pizza", "pasta", "rice", "soup", "salad", "cake", "bread", "cheese", "apples", "noodles", "sushi", "tacos"),
        ("My favourite food is {v}.", "I love eating {v}."),
        "Got it: your favourite food is {v}.",
        ("Actually, my favourite food is {v}.",),
        ("What food do I like?", "What is my favourite food?"),
        "Your favourite food is {v}.",
    ),
)
UPDATE_PREFIX = "Okay, updated: "  # + the answer with a lowercase first letter: "Okay, updated: you live in Rome."
SMALL_TALK = (
    ("Thanks!", "You are welcome."),
    ("Thank you.", "You are welcome."),
    ("How are you?", "I am fine, thank you."),
    ("Good morning.", "Good morning to you too."),
    ("What can you do?", "I can remember what you tell me."),
    ("That is nice.", "I am glad to hear it."),
    ("Okay.", "Is there anything else?"),
    ("Hello!", "Hello! How can I help you?"),
    ("Tell me a joke.", "Why did the cat sit on the computer? To keep an eye on the mouse."),
    ("What day is it?", "Sorry, I do not know the date."),
)
SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are a friendly assistant who remembers what the user says.")
EXCHANGES = (3, 6)  # (fewest, most) user/assistant exchanges per conversation; half of them (rounded down) questions
SYSTEM_PROBABILITY = 0.5
KIND_WEIGHTS = {"ask": 1.0, "state": 0.8, "update": 0.7, "talk": 0.5}  # among the kinds an exchange may be
MAX_TRIES = 1000  # draws for one conversation before giving up (never reached in practice)


def _exchanges(rng: random.Random, count: int) -> list[tuple[str, str, bool]] | None:
    """(user message, assistant reply, needs_context) for each of `count` exchanges, `count // 2` of them questions;
    None where the draw ran into a question with no fact to ask about (the caller draws again).

    Drawn left to right, each exchange's kind among those possible there: the first states a fact; a question asks
    about a fact stated or updated at least two exchanges before it (preferring facts not asked about since they were
    last told, and of those, updated ones); an update comes only where a question can still follow it."""
    facts = {f.name: f for f in FACTS}
    value: dict[str, str] = {}  # fact name -> its latest value
    told_at: dict[str, int] = {}  # fact name -> the exchange that last stated or updated it
    asked_since: set[str] = set()  # facts asked about since they were last told
    updated: set[str] = set()
    asks_left = count // 2
    out: list[tuple[str, str, bool]] = []
    for i in range(count):
        ready = sorted(name for name, at in told_at.items() if at < i - 1)
        free = count - i > asks_left  # room for an exchange that is not a question
        kinds = []
        if asks_left and ready:
            kinds.append("ask")
        if free and len(value) < len(FACTS):
            kinds.append("state")
        if free and i > 0:
            kinds.append("talk")
            if asks_left and count - i >= 3:  # a question can come two exchanges later
                kinds.append("update")
        if i == 0:
            kinds = ["state"]
        if not kinds:
            return None
        kind = rng.choices(kinds, [KIND_WEIGHTS[k] for k in kinds])[0]
        if kind == "state":
            fact = rng.choice([f for f in FACTS if f.name not in value])
            v = value[fact.name] = rng.choice(fact.values)
            told_at[fact.name] = i
            asked_since.discard(fact.name)
            out.append((rng.choice(fact.statements).format(v=v), fact.acknowledgement.format(v=v), False))
        elif kind == "update":
            fact = facts[rng.choice(sorted(value))]
            v = value[fact.name] = rng.choice([x for x in fact.values if x != value[fact.name]])
            told_at[fact.name] = i
            asked_since.discard(fact.name)
            updated.add(fact.name)
            answer = fact.answer.format(v=v)
            out.append((rng.choice(fact.updates).format(v=v), UPDATE_PREFIX + answer[0].lower() + answer[1:], False))
        elif kind == "talk":
            out.append((*rng.choice(SMALL_TALK), False))
        else:
            fresh = [name for name in ready if name not in asked_since]
            changed = [name for name in fresh if name in updated]
            fact = facts[rng.choice(changed or fresh or ready)]
            asked_since.add(fact.name)
            asks_left -= 1
            out.append((rng.choice(fact.questions), fact.answer.format(v=value[fact.name]), True))
    return out


def chat_conversation(rng: random.Random, id: str = "") -> Conversation:
    """One random conversation of the built-in world, drawn from `rng`."""
    count = rng.randint(*EXCHANGES)
    for _ in range(MAX_TRIES):
        exchanges = _exchanges(rng, count)
        if exchanges is None:
            continue
        messages = [Message("system", rng.choice(SYSTEM_PROMPTS))] if rng.random() < SYSTEM_PROBABILITY else []
        for user, reply, needs_context in exchanges:
            messages += [Message("user", user), Message("assistant", reply, needs_context)]
        return Conversation(id, tuple(messages))
    raise RuntimeError(f"no conversation of {count} exchanges could be drawn in {MAX_TRIES} tries")


def _conversations(
    split: str, count: int, seed: int, exclude: set[tuple[Message, ...]] | None = None
) -> list[Conversation]:
    rng = random.Random(f"chat:{seed}:{split}")
    out: list[Conversation] = []
    while len(out) < count:
        conversation = chat_conversation(rng, f"chat-{split}-{len(out):05d}")
        if exclude is not None and conversation.messages in exclude:
            continue
        out.append(conversation)
    return out


def chat_split(*, train: int = 4000, test: int = 400, seed: int = 0) -> tuple[list[Conversation], list[Conversation]]:
    """(train, test) conversations of the built-in world; ids "chat-{split}-{n:05d}". The test set shares no
    conversation (the same messages) with the training set."""
    if train < 0 or test < 0:
        raise UserError(f"conversation counts must not be negative, got train={train}, test={test}")
    train_set = _conversations("train", train, seed)
    seen = {c.messages for c in train_set}
    return train_set, _conversations("test", test, seed, exclude=seen)
