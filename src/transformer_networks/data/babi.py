"""bAbI-style stories (Weston et al. 2015, "Towards AI-complete question answering", tasks 1-3), simulated here from
the tasks' descriptions: a seeded world of people moving between rooms and carrying things, and one question per
story whose answer is a location word of the story, as an extractive (SQuAD-style) QA set.

The world: four actors (Mary, John, Sandra, Daniel), six locations (bathroom, hallway, kitchen, garden, office,
bedroom), four objects (football, apple, milk, book). Each sentence is one event:
    move   "Mary moved to the bathroom."   (moved, went, journeyed, travelled; always to another location)
    grab   "John picked up the football."  (picked up, got, grabbed, took; only by an actor whose location is known,
                                            of an object nobody holds that lies where the actor is or has not been
                                            seen yet, which then is where the actor is)
    drop   "Sandra dropped the milk."      (dropped, discarded, put down, left; an object the actor holds)
An object someone holds goes wherever they go. Sentences end with "." and are joined by single spaces.

The tasks (the question ends with "?"; the answer is always a location named in the story):
    1  single supporting fact, 2-8 sentences, moves only. "Where is Mary?": the location of her last move.
         "John went to the hallway. Mary moved to the bathroom. Mary travelled to the office."
         Where is Mary? -> office
    2  two supporting facts, 3-12 sentences. "Where is the football?" (asked only of an object someone has picked
       up): where its holder is now, or where the actor who dropped it was then.
         "John went to the hallway. John picked up the football. Mary moved to the garden. John journeyed to the
         kitchen." Where is the football? -> kitchen
    3  three supporting facts, 4-12 sentences. "Where was the football before the kitchen?": the location the object
       was in before it was (last) brought into the kitchen; its history of locations starts where it was first
       picked up and follows its holders' moves. Asked only where the answer is unique: the object has been in the
       kitchen, never as the first place of its history, and every time it came there from the same place.
         "John went to the hallway. John picked up the football. John journeyed to the kitchen. John dropped the
         football." Where was the football before the kitchen? -> hallway
`answer_start` points at the location word in the supporting sentence that decides the answer (the last one that
does): the move that brought the actor, or the object's holder, to that location.

Sizes: `babi_split` gives 30,000 training and 300 test questions per task by default, one question per story, of
about 25 (task 1) to 45 (task 3) words on average and at most ~60 (30,000 rather than 3,000: a model learns 9,000
stories by heart before it learns the two- and three-hop lookups; BENCHMARKS.md). Train and test come from separate
seeded streams; the test set is drawn first and the training set skips its (context, question) pairs, so the two
share none and the test set does not depend on the training set's size. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import UserError
from .qa import QAExample

ACTORS = ("Mary", "John", "Sandra", "Daniel")
LOCATIONS = ("bathroom", "hallway", "kitchen", "garden", "office", "bedroom")
OBJECTS = ("football", "apple", "milk", "book")
MOVE_VERBS = ("moved", "went", "journeyed", "travelled")
GRAB_VERBS = ("picked up", "got", "grabbed", "took")
DROP_VERBS = ("dropped", "discarded", "put down", "left")
TASKS = (1, 2, 3)
STORY_SENTENCES = {1: (2, 8), 2: (3, 12), 3: (4, 12)}  # (fewest, most) sentences per story
EVENT_WEIGHTS = {2: (0.5, 0.3, 0.2), 3: (0.5, 0.35, 0.15)}  # move, grab, drop (where each is possible)
MAX_TRIES = 1000  # stories drawn for one question before giving up (never reached in practice)


@dataclass
class _World:
    """The state of a story being told, with where in the context each fact is stated: a place is
    (location, character offset of the location word in the sentence that puts it there)."""

    sentences: list[str] = field(default_factory=list)
    length: int = 0  # characters of the context so far
    actor_at: dict[str, tuple[str, int]] = field(default_factory=dict)
    holder: dict[str, str] = field(default_factory=dict)  # object -> the actor holding it
    object_at: dict[str, tuple[str, int]] = field(default_factory=dict)  # objects lying somewhere (dropped)
    history: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # object -> its places, in order

    def say(self, sentence: str) -> int:
        """Appends a sentence; returns its offset in the context."""
        start = self.length + (1 if self.sentences else 0)
        self.sentences.append(sentence)
        self.length = start + len(sentence)
        return start

    @property
    def context(self) -> str:
        return " ".join(self.sentences)

    def move(self, actor: str, verb: str, location: str) -> None:
        sentence = f"{actor} {verb} to the {location}."
        place = (location, self.say(sentence) + len(sentence) - 1 - len(location))
        self.actor_at[actor] = place
        for obj, who in self.holder.items():
            if who == actor:
                self.history[obj].append(place)

    def grab(self, actor: str, verb: str, obj: str) -> None:
        self.say(f"{actor} {verb} the {obj}.")
        self.holder[obj] = actor
        self.object_at.pop(obj, None)
        history = self.history.setdefault(obj, [])
        if not history or history[-1][0] != self.actor_at[actor][0]:
            history.append(self.actor_at[actor])

    def drop(self, actor: str, verb: str, obj: str) -> None:
        self.say(f"{actor} {verb} the {obj}.")
        del self.holder[obj]
        self.object_at[obj] = self.actor_at[actor]

    def grabbable(self) -> list[tuple[str, str]]:
        """(actor, object) pairs that can be picked up now."""
        return [
            (actor, obj)
            for actor, (location, _) in self.actor_at.items()
            for obj in OBJECTS
            if obj not in self.holder and self.object_at.get(obj, (location, 0))[0] == location
        ]

    def where_is(self, obj: str) -> tuple[str, int]:
        return self.actor_at[self.holder[obj]] if obj in self.holder else self.object_at[obj]


def _tell(rng: random.Random, task: int) -> _World:
    """A random story of the task's length and kind of events."""
    world = _World()
    low, high = STORY_SENTENCES[task]
    for _ in range(rng.randint(low, high)):
        grabs = world.grabbable() if task > 1 else []
        drops = [(who, obj) for obj, who in world.holder.items()]
        move_w, grab_w, drop_w = EVENT_WEIGHTS.get(task, (1.0, 0.0, 0.0))
        kind = rng.choices(("move", "grab", "drop"), (move_w, grab_w if grabs else 0.0, drop_w if drops else 0.0))[0]
        if kind == "move":
            actor = rng.choice(ACTORS)
            here = world.actor_at.get(actor, ("", 0))[0]
            world.move(actor, rng.choice(MOVE_VERBS), rng.choice([loc for loc in LOCATIONS if loc != here]))
        elif kind == "grab":
            actor, obj = rng.choice(sorted(grabs))
            world.grab(actor, rng.choice(GRAB_VERBS), obj)
        else:
            actor, obj = rng.choice(sorted(drops))
            world.drop(actor, rng.choice(DROP_VERBS), obj)
    return world


def _task3_questions(history: list[tuple[str, int]]) -> list[tuple[str, tuple[str, int]]]:
    """(location, the place before it) for each location of an object's history that has a unique answer to "where
    was it before the location?": never the history's first place, always reached from the same place."""
    before: dict[str, set[str]] = {}
    answer: dict[str, tuple[str, int]] = {}
    for i, (location, _) in enumerate(history):
        before.setdefault(location, set()).add(history[i - 1][0] if i else "")
        if i:
            answer[location] = history[i - 1]  # the last time it was brought there
    return [(loc, answer[loc]) for loc in sorted(before) if "" not in before[loc] and len(before[loc]) == 1]


def _ask(rng: random.Random, task: int, world: _World) -> tuple[str, tuple[str, int]] | None:
    """A question about the story with its answer place, or None where the story has no question of the task."""
    if task == 1:
        if not world.actor_at:
            return None
        actor = rng.choice(sorted(world.actor_at))
        return f"Where is {actor}?", world.actor_at[actor]
    if task == 2:
        if not world.history:
            return None
        obj = rng.choice(sorted(world.history))
        return f"Where is the {obj}?", world.where_is(obj)
    candidates = [
        (obj, loc, place) for obj in sorted(world.history) for loc, place in _task3_questions(world.history[obj])
    ]
    if not candidates:
        return None
    obj, location, place = rng.choice(candidates)
    return f"Where was the {obj} before the {location}?", place


def babi_story(rng: random.Random, task: int) -> tuple[str, str, tuple[str, int]]:
    """One (context, question, (answer, answer_start)) of a task (1, 2 or 3), drawn from `rng`."""
    if task not in TASKS:
        raise UserError(f"unknown bAbI task {task}; the simulated tasks are {', '.join(map(str, TASKS))}")
    for _ in range(MAX_TRIES):
        world = _tell(rng, task)
        asked = _ask(rng, task, world)
        if asked is not None:
            question, answer = asked
            return world.context, question, answer
    raise RuntimeError(f"no bAbI task {task} story with a question in {MAX_TRIES} tries")


def _examples(
    task: int, split: str, count: int, seed: int, exclude: set[tuple[str, str]] | None = None
) -> list[QAExample]:
    rng = random.Random(f"babi:{seed}:task{task}:{split}")
    examples: list[QAExample] = []
    while len(examples) < count:
        context, question, answer = babi_story(rng, task)
        if exclude is not None and (context, question) in exclude:
            continue
        examples.append(
            QAExample(f"babi{task}-{split}-{len(examples):05d}", question, context, (answer,), f"task{task}")
        )
    return examples


def babi_split(
    tasks: Iterable[int] = TASKS, *, train_per_task: int = 30000, test_per_task: int = 300, seed: int = 0
) -> tuple[list[QAExample], list[QAExample]]:
    """(train, test) questions of the given tasks, task by task; ids "babi{task}-{split}-{n:05d}", titles "task{n}".
    The training set leaves out every (context, question) of the test set, which is drawn first: the test set of
    a seed is the same whatever the size of the training set."""
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UserError(f"bAbI tasks must be some of {', '.join(map(str, TASKS))}, got {tasks}")
    train: list[QAExample] = []
    test: list[QAExample] = []
    for task in dict.fromkeys(tasks):
        task_test = _examples(task, "test", test_per_task, seed)
        test += task_test
        train += _examples(task, "train", train_per_task, seed, exclude={(ex.context, ex.question) for ex in task_test})
    return train, test
