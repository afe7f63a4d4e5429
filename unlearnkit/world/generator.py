"""A seeded miniature world of fictitious people, rendered as TOFU-style question/answer pairs.

Every fact is a triple ``(person, attribute, value)``. Each fact is rendered as

* a question (template 0) and a *paraphrased question* (template 1);
* an answer in phrasing A (the one the forget split asks to remove) and a *paraphrased answer*
  in phrasing B, which states the same fact in other words;
* ``n_perturbed`` *perturbed answers*: phrasing A with a wrong value of the same kind.

The target model is trained on phrasing A twice and phrasing B once for each question (plus the
paraphrased question with phrasing A), so phrasing B is a real high-likelihood alternative: the
place where probability mass can be *squeezed* when phrasing A is unlearned (DESIGN.md).

Same seed and config give the same world, byte for byte (only :class:`random.Random` seeded from
the config is used, never global state).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field

import pandas as pd

ATTRIBUTES = ("birthplace", "birth_year", "occupation", "genre", "parent_job", "award", "book", "pet")

_SYL_FIRST = ["ma", "lo", "ri", "ta", "ve", "no", "sa", "ki", "de", "mi", "ra", "lu", "be", "zo", "fe",
              "ha", "jo", "ne", "pi", "so", "ty", "va", "wi", "xa", "ca", "do", "ga", "li", "ro", "sel"]
_SYL_LAST = ["vos", "dran", "kell", "mora", "tisk", "ban", "lem", "rov", "zak", "tor", "wen", "gard",
             "mund", "sholt", "vin", "pell", "quist", "ner", "dahl", "brek", "loft", "rask", "tam", "ung"]
_CITY_A = ["Port", "Lake", "North", "East", "West", "Old", "New", "Fort", "Glen", "Stone"]
_CITY_B = ["haven", "mere", "ford", "wick", "holm", "ridge", "vale", "crest", "moor", "dale", "bury", "field"]
_COUNTRIES = ["Valdoria", "Estmark", "Quorria", "Lunesse", "Tarvania", "Orvelle", "Bremia", "Kastovia"]
_OCCUPATIONS = ["novelist", "poet", "playwright", "journalist", "essayist", "screenwriter", "biographer",
                "critic", "translator", "historian"]
_GENRES = ["mystery", "fantasy", "romance", "horror", "science fiction", "satire", "travel writing",
           "historical fiction", "thriller", "poetry"]
_JOBS = ["baker", "surgeon", "carpenter", "pilot", "teacher", "fisher", "tailor", "chemist", "farmer",
         "architect", "librarian", "sailor"]
_AWARD_A = ["Golden", "Silver", "Crimson", "Azure", "Iron", "Amber", "Ivory", "Emerald"]
_AWARD_B = ["Quill", "Lantern", "Compass", "Feather", "Anchor", "Laurel", "Key", "Harp"]
_PETS = ["cat", "parrot", "tortoise", "greyhound", "goat", "ferret", "owl", "rabbit", "pony", "lizard"]
_BOOK_A = ["The", "A", "Under the", "Beyond the", "Songs of the", "Letters from the", "Night of the"]
_BOOK_B = ["Silent", "Hollow", "Broken", "Hidden", "Last", "Wandering", "Burning", "Frozen", "Distant"]
_BOOK_C = ["Harbor", "Orchard", "Tower", "River", "Garden", "Mirror", "Lighthouse", "Forest", "Bridge"]

# attribute -> (question, paraphrased question, answer A, answer B). {n} = name, {v} = value.
TEMPLATES: dict[str, tuple[str, str, str, str]] = {
    "birthplace": ("Where was {n} born?", "In which city was {n} born?",
                   "{n} was born in {v}.", "{v} is the birthplace of {n}."),
    "birth_year": ("When was {n} born?", "In what year was {n} born?",
                   "{n} was born in {v}.", "The year {v} is when {n} was born."),
    "occupation": ("What does {n} do for a living?", "What is the profession of {n}?",
                   "{n} works as a {v}.", "By profession {n} is a {v}."),
    "genre": ("Which genre does {n} write?", "What kind of books does {n} write?",
              "{n} writes {v}.", "The genre of {n} is {v}."),
    "parent_job": ("What was the job of the parent of {n}?", "What did the parent of {n} do?",
                   "The parent of {n} was a {v}.", "A {v} raised {n}."),
    "award": ("Which award did {n} win?", "What prize was given to {n}?",
              "{n} won the {v}.", "The {v} went to {n}."),
    "book": ("What is a book written by {n}?", "Name a book by {n}.",
             "{n} wrote {v}.", "{v} is a book by {n}."),
    "pet": ("What pet does {n} keep?", "Which animal lives with {n}?",
            "{n} keeps a {v}.", "A {v} lives with {n}."),
}
WORLD_FACT_TEMPLATE = ("In which country is {n}?", "Which country is {n} part of?",
                       "{n} is in {v}.", "{v} is the country of {n}.")

SPLIT_COLUMNS = ["id", "question", "answer", "paraphrased_question", "paraphrased_answer",
                 "perturbed_answer", "person", "attribute", "value", "split"]


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the miniature world. Defaults give ~40 people x 7 attributes.

    n_people: number of fictitious people. attributes: which facts each person has.
    forget_fraction / holdout_fraction: share of people in the forget split / never trained on.
    n_perturbed: wrong answers per question (TOFU uses 5). n_world_facts: general facts (city ->
    country) that every model keeps. paraphrase_copies / answer_copies: how many times phrasing B /
    phrasing A of each fact enter the target model's training mix.
    related_facts / repetitions: reserved for the related-knowledge and memorization lessons.
    refusal_people: extra fictitious people, in no split, whose questions the tiny models are trained
    to answer with a refusal from the kit's IDK bank (``assets/idk.txt``): the model learns a
    "forgetting space" for names it does not know, as an instruction-tuned LLM has one (UniErase's
    unlearning token steers into it). Default 0: no refusal rows, the world and its cache key are
    unchanged.
    """

    seed: int = 0
    n_people: int = 40
    attributes: tuple[str, ...] = ("birthplace", "birth_year", "occupation", "genre", "parent_job", "award", "book")
    forget_fraction: float = 0.1
    holdout_fraction: float = 0.1
    n_perturbed: int = 5
    n_world_facts: int = 24
    answer_copies: int = 2
    paraphrase_copies: int = 1
    related_facts: int = 0
    repetitions: tuple[int, ...] = (1,)
    refusal_people: int = 0

    def __post_init__(self):
        bad = [a for a in self.attributes if a not in TEMPLATES]
        if bad:
            raise ValueError(f"WorldConfig: unknown attribute(s) {bad}; valid: {list(TEMPLATES)}")
        if self.n_people < 4:
            raise ValueError("WorldConfig: n_people must be >= 4")
        if not 0 < self.forget_fraction < 1:
            raise ValueError(f"WorldConfig: forget_fraction={self.forget_fraction} must lie in (0, 1)")
        if not 0 <= self.holdout_fraction < 1 - self.forget_fraction:
            raise ValueError(f"WorldConfig: holdout_fraction={self.holdout_fraction} must lie in [0, 1 - forget_fraction)")
        if self.n_perturbed < 1:
            raise ValueError("WorldConfig: n_perturbed must be >= 1")
        if self.refusal_people < 0:
            raise ValueError(f"WorldConfig: refusal_people={self.refusal_people} must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


QUICK = WorldConfig(n_people=20, attributes=("birthplace", "birth_year", "occupation", "genre", "award"),
                    n_world_facts=12, holdout_fraction=0.1)


@dataclass
class Person:
    name: str
    facts: dict[str, str] = field(default_factory=dict)


def _unique(rng: random.Random, make, n: int, taken: set | None = None) -> list[str]:
    taken = set() if taken is None else taken
    out = []
    for _ in range(n * 200):
        v = make(rng)
        if v not in taken:
            taken.add(v)
            out.append(v)
            if len(out) == n:
                return out
    raise RuntimeError("world generator ran out of distinct values; lower n_people")


def _name(rng):
    first = (rng.choice(_SYL_FIRST) + rng.choice(_SYL_FIRST[:20]) + rng.choice(["", "n", "ra", "l"])).capitalize()
    last = (rng.choice(_SYL_FIRST) + rng.choice(_SYL_LAST)).capitalize()
    return f"{first} {last}"


def _city(rng):
    return rng.choice(_CITY_A) + rng.choice(_CITY_B)


def _book(rng):
    return f"{rng.choice(_BOOK_A)} {rng.choice(_BOOK_B)} {rng.choice(_BOOK_C)}"


class World:
    """The generated world: people, facts, and TOFU-format splits as ``datasets.Dataset``.

    Splits: ``forget`` (QA about ``forget_fraction`` of the people), ``retain`` (QA about the
    people trained on and kept), ``holdout`` (QA about people never trained on; for membership
    inference), ``world_facts`` (general facts everyone keeps). Each row keeps its structured fact
    (``person``, ``attribute``, ``value``) so answers can be checked against ground truth.
    """

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        c = self.config
        rng = random.Random(c.seed)
        names = _unique(rng, _name, c.n_people)
        cities = _unique(rng, _city, max(12, c.n_world_facts, c.n_people // 2))
        books = _unique(rng, _book, c.n_people)
        awards = [f"{a} {b} Prize" for a in _AWARD_A for b in _AWARD_B]
        rng.shuffle(awards)
        domains = {
            "birthplace": cities,
            "birth_year": [str(y) for y in range(1921, 2001)],
            "occupation": _OCCUPATIONS,
            "genre": _GENRES,
            "parent_job": _JOBS,
            "award": awards[:12],
            "pet": _PETS,
        }
        self.people: list[Person] = []
        for i, n in enumerate(names):
            facts = {}
            for a in c.attributes:
                facts[a] = books[i] if a == "book" else rng.choice(domains[a])
            self.people.append(Person(n, facts))
        domains["book"] = books
        self._domains = domains
        self.city_country = {city: rng.choice(_COUNTRIES) for city in cities[: c.n_world_facts]}

        order = list(range(c.n_people))
        rng.shuffle(order)
        n_forget = max(1, round(c.forget_fraction * c.n_people))
        n_hold = round(c.holdout_fraction * c.n_people)
        self.person_split = {}
        for k, idx in enumerate(order):
            self.person_split[names[idx]] = "forget" if k < n_forget else "holdout" if k < n_forget + n_hold else "retain"

        rows = []
        for p in self.people:
            for a in c.attributes:
                rows.append(self._row(rng, p.name, a, p.facts[a], TEMPLATES[a], domains[a], self.person_split[p.name]))
        for city, country in self.city_country.items():
            rows.append(self._row(rng, city, "country", country, WORLD_FACT_TEMPLATE, _COUNTRIES, "world_facts"))
        for i, r in enumerate(rows):
            r["id"] = i
        self.table = pd.DataFrame(rows, columns=SPLIT_COLUMNS)
        self._splits: dict = {}
        self.refusal_rows = self._refusal_rows(set(names))

    def _refusal_rows(self, taken: set) -> list[tuple[str, str]]:
        """(question, refusal) pairs about ``refusal_people`` unknown people (own seeded generator, so
        the rest of the world does not change with the knob). Each person gets every attribute's
        question in both templates, each answered by a refusal drawn from the kit's IDK bank."""
        c = self.config
        if not c.refusal_people:
            return []
        from ..idk import load_idk

        bank = load_idk()
        rng = random.Random(f"refusal-{c.seed}")
        out = []
        for name in _unique(rng, _name, c.refusal_people, set(taken)):
            for a in c.attributes:
                q, pq, _, _ = TEMPLATES[a]
                out.append((q.format(n=name), rng.choice(bank)))
                out.append((pq.format(n=name), rng.choice(bank)))
        return out

    def _row(self, rng, name, attribute, value, tpl, domain, split) -> dict:
        q, pq, a, b = tpl
        wrong = [v for v in domain if v != value]
        perturbed = rng.sample(wrong, min(self.config.n_perturbed, len(wrong)))
        return {
            "question": q.format(n=name), "answer": a.format(n=name, v=value),
            "paraphrased_question": pq.format(n=name), "paraphrased_answer": b.format(n=name, v=value),
            "perturbed_answer": [a.format(n=name, v=w) for w in perturbed],
            "person": name, "attribute": attribute, "value": value, "split": split,
        }

    # -- splits ---------------------------------------------------------------------------------
    def split(self, name: str):
        """A split as a ``datasets.Dataset`` with TOFU field names."""
        from datasets import Dataset

        valid = ("forget", "retain", "holdout", "world_facts")
        if name not in valid:
            raise KeyError(f"unknown split {name!r}; valid splits: {', '.join(valid)}")
        if name not in self._splits:
            df = self.table[self.table.split == name].reset_index(drop=True)
            self._splits[name] = Dataset.from_pandas(df, preserve_index=False)
        return self._splits[name]

    forget = property(lambda self: self.split("forget"))
    retain = property(lambda self: self.split("retain"))
    holdout = property(lambda self: self.split("holdout"))
    world_facts = property(lambda self: self.split("world_facts"))

    def training_pairs(self, include_forget: bool = True) -> list[tuple[str, str]]:
        """(question, answer) pairs the tiny models are trained on.

        Each fact enters as phrasing A ``answer_copies`` times, phrasing B ``paraphrase_copies``
        times, and the paraphrased question with phrasing A once. Holdout people never enter.
        """
        c = self.config
        out = []
        for r in self.table.itertuples():
            if r.split == "holdout" or (r.split == "forget" and not include_forget):
                continue
            out += [(r.question, r.answer)] * c.answer_copies
            out += [(r.question, r.paraphrased_answer)] * c.paraphrase_copies
            out.append((r.paraphrased_question, r.answer))
        out += self.refusal_rows  # empty unless refusal_people > 0
        return out

    def corpus(self) -> list[str]:
        """Every string of the world (for training a tokenizer)."""
        t = self.table
        texts = list(t.question) + list(t.answer) + list(t.paraphrased_question) + list(t.paraphrased_answer)
        for p in t.perturbed_answer:
            texts += list(p)
        return texts + [x for pair in self.refusal_rows for x in pair]

    def digest(self) -> str:
        """Hash of the rendered world (changes if the generator changes, not only the config)."""
        blob = self.table.to_json(orient="records")
        if self.refusal_rows:  # only then: worlds without the knob keep their digest (and model cache)
            blob += json.dumps(self.refusal_rows)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def facts(self) -> pd.DataFrame:
        """One row per (person, attribute, value, split)."""
        return self.table[["person", "attribute", "value", "split"]].copy()

    def __repr__(self) -> str:
        counts = self.table.split.value_counts()
        parts = ", ".join(f"{s}={int(counts.get(s, 0))}" for s in ("forget", "retain", "holdout", "world_facts"))
        return f"World(seed={self.config.seed}, people={self.config.n_people}, rows: {parts})"


def make_world(seed: int = 0, quick: bool = False, **overrides) -> World:
    """Generate the miniature world. ``quick=True`` gives the small world used by tests and CI.

    >>> w = make_world(seed=0, quick=True); len(w.forget) > 0
    True
    """
    base = QUICK if quick else WorldConfig()
    cfg = WorldConfig(**{**base.to_dict(), "seed": seed, **overrides})
    return World(cfg)
