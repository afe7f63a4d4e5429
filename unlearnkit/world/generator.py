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
from datasets import Dataset

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

# record kind -> (header question, text template). Values are drawn by _record_values.
RECORD_TEMPLATES: dict[str, tuple[str, str]] = {
    "biography": ("Write the biography record of {n}.",
                  "{n} grew up in {city} with a {pet}, studied {subject} for {k} years and left at {age}."),
    "private": ("Write the private note about {n}.",
                "{n} keeps the code {code} for the {object} and meets {other} every {day} at {hour}."),
    "id_number": ("Write the ID record of {n}.",
                  "The passport of {n} has number {letters}-{digits} and expires in {year}."),
    "address": ("Write the address record of {n}.",
                "{n} lives at {num} {street} Lane, flat {flat}, {city}, postcode {post}."),
}
_SUBJECTS = ["chemistry", "law", "music", "botany", "geology", "history", "latin", "painting", "physics", "dance"]
_OBJECTS = ["safe", "locker", "cellar", "garage", "diary", "bike lock", "mailbox", "attic"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_STREETS = ["Willow", "Harbor", "Copper", "Maple", "Lantern", "Birch", "Quarry", "Orchard", "Falcon", "Mill"]


def _record_values(rng: random.Random, cities: list[str], names: list[str]) -> dict:
    """One random draw of every placeholder of :data:`RECORD_TEMPLATES` (the world's own vocabulary)."""
    return {
        "city": rng.choice(cities), "pet": rng.choice(_PETS), "subject": rng.choice(_SUBJECTS),
        "k": rng.randint(2, 9), "age": rng.randint(17, 29), "code": f"{rng.randint(0, 9999):04d}",
        "object": rng.choice(_OBJECTS), "other": rng.choice(names).split()[0], "day": rng.choice(_DAYS),
        "hour": f"{rng.randint(6, 22)}:{rng.choice(['00', '15', '30', '45'])}",
        "letters": "".join(rng.choice("ABCDEFGHKMNPRSTVXZ") for _ in range(2)), "digits": f"{rng.randint(0, 999999):06d}",
        "year": rng.randint(2027, 2039), "num": rng.randint(2, 98), "street": rng.choice(_STREETS),
        "flat": rng.randint(1, 40), "post": f"{rng.randint(10, 99)}{rng.choice('ABCDEFGHKMNPRSTVXZ')}{rng.randint(1, 9)}",
    }


RECORD_COLUMNS = ["id", "question", "answer", "text", "perturbed_answer", "person", "kind", "repetitions", "split"]

SPLIT_COLUMNS = ["id", "question", "answer", "paraphrased_question", "paraphrased_answer",
                 "perturbed_answer", "person", "attribute", "value", "split"]

# -- related knowledge (the ``related_facts`` knob; UIPE) ------------------------------------------
#: attributes a pair of twins shares (same family): a forgotten one can be re-derived from the twin
FAMILY_ATTRIBUTES = ("birthplace", "birth_year", "parent_job")
#: related fact, stated about the twin {m} of {n}: (question, paraphrased question, answer A, answer B)
RELATED_TEMPLATES: dict[str, tuple[str, str, str, str]] = {
    "birthplace": ("Who shares a birthplace with {n}?", "Which twin was born in the same city as {n}?",
                   "{m}, the twin of {n}, was born in {v} too.", "Like {n}, the twin {m} was born in {v}."),
    "birth_year": ("Who shares a birthday with {n}?", "Which twin was born on the same day as {n}?",
                   "{m}, the twin of {n}, was born in {v} too.", "Like {n}, the twin {m} was born in {v}."),
    "parent_job": ("Who shares a parent with {n}?", "Which twin has the same parent as {n}?",
                   "{m}, the twin of {n}, has a parent who was a {v}.", "Like {n}, the twin {m} was raised by a {v}."),
}
#: indirect question about {n}: its answer is {n}'s own (shared) value, reached through the twin
INDIRECT_TEMPLATES: dict[str, tuple[str, str, str, str]] = {
    "birthplace": ("Where was the twin of {n} born?", "In which city was the twin of {n} born?",
                   "The twin of {n} was born in {v}.", "{v} is the birthplace of the twin of {n}."),
    "birth_year": ("When was the twin of {n} born?", "In what year was the twin of {n} born?",
                   "The twin of {n} was born in {v}.", "The year {v} is when the twin of {n} was born."),
    "parent_job": ("What was the job of the parent of the twin of {n}?", "What did the parent of the twin of {n} do?",
                   "The parent of the twin of {n} was a {v}.", "A {v} raised the twin of {n}."),
}
#: extra columns of the table when ``related_facts > 0``: ``twin`` (the person the row goes through)
#: and ``carrier`` (for an indirect probe: the ``id`` of the related-fact row that carries its answer;
#: -1 elsewhere)
RELATED_COLUMNS = ["twin", "carrier"]


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the miniature world. Defaults give ~40 people x 7 attributes.

    n_people: number of fictitious people. attributes: which facts each person has.
    forget_fraction / holdout_fraction: share of people in the forget split / never trained on.
    n_perturbed: wrong answers per question (TOFU uses 5). n_world_facts: general facts (city ->
    country) that every model keeps. paraphrase_copies / answer_copies: how many times phrasing B /
    phrasing A of each fact enter the target model's training mix.
    related_facts: number of *twin pairs* (0: off, the default; existing caches unchanged). Twins
    share their family facts (:data:`FAMILY_ATTRIBUTES` present in ``attributes``). Every forgotten
    person gets a twin among the retain people first, then the remaining pairs are formed among
    retain people. Each pair adds *related facts* to the retain split ("Who shares a birthplace
    with F? T, the twin of F, was born in Z too.") and *indirect questions* ("Where was the twin of
    F born?", whose answer is F's own value): trained for retain pairs (so the pattern is
    learnable), held out for forgotten people as the ``indirect`` split (probes never trained on
    verbatim; see :attr:`World.indirect`).
    repetitions: memorized text (off when empty, the default). When given, e.g. ``(1, 3, 9, 27)``,
    every person gets one free-text *record* per kind in ``record_kinds`` (a short biography, a
    private note, an ID number, an address: see :data:`RECORD_TEMPLATES`), and the target model
    sees each record ``repetitions[(i + k) % len(repetitions)]`` times **in the whole training**
    (person ``i``, kind ``k``; spread evenly over the epochs, :meth:`World.record_schedule`), so
    every person holds one record at every level and the model ends up with a spread from
    unmemorized to verbatim. (Seen once *per epoch*, even the rarest record was verbatim: MA 1.0 on
    all 64 trained records of the quick world at 40 epochs, measured.) Records live in ``World.records`` and the splits
    ``forget_records`` / ``retain_records`` / ``holdout_records`` (:meth:`World.record_split`);
    holdout people's records are never trained on (the "unseen text of the same kind").
    record_kinds: which record kinds (keys of :data:`RECORD_TEMPLATES`); used only with repetitions.
    refusal_people: extra fictitious people, in no split, whose questions the tiny models are trained
    to answer with a refusal from the kit's IDK bank (``assets/idk.txt``): the model learns a
    "forgetting space" for names it does not know, as an instruction-tuned LLM has one (UniErase's
    unlearning token steers into it). Default 0: no refusal rows, the world and its cache key are
    unchanged.
    forget_levels: nested forget subsets like TOFU's forget01 / forget05 / forget10 (off when empty,
    the default). Each level is a fraction of ``n_people`` at most ``forget_fraction``; level ``l``
    holds the first ``round(l * n_people)`` people of the forget split (at least one), so the levels
    are nested, and adds the splits ``forget<NN>`` (those people's QA, ``NN = round(100 * l)`` with
    two digits) and ``retain<100-NN>`` (every other trained person's QA: the retain split plus the
    rest of the forget split; no world facts), as TOFU's forget01 / retain99. The target model is trained on all of them; the retain model without
    the whole forget split (TOFU's retain90 model when ``forget_fraction`` is 0.1).
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
    repetitions: tuple[int, ...] = ()
    record_kinds: tuple[str, ...] = ("biography", "private", "id_number", "address")
    refusal_people: int = 0
    forget_levels: tuple[float, ...] = ()

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
        if not isinstance(self.related_facts, int) or self.related_facts < 0:
            raise ValueError(f"WorldConfig: related_facts={self.related_facts!r} must be an int >= 0 (number of twin pairs)")
        if self.related_facts and not set(FAMILY_ATTRIBUTES) & set(self.attributes):
            raise ValueError(f"WorldConfig: related_facts={self.related_facts} needs at least one family attribute "
                             f"{list(FAMILY_ATTRIBUTES)} in attributes={list(self.attributes)}")
        if any(int(r) != r or r < 1 for r in self.repetitions):
            raise ValueError(f"WorldConfig: repetitions={self.repetitions} must be integers >= 1 (times a record "
                             "is seen in training); () turns records off")
        badk = [k for k in self.record_kinds if k not in RECORD_TEMPLATES]
        if badk or (self.repetitions and not self.record_kinds):
            raise ValueError(f"WorldConfig: record_kinds={self.record_kinds} must be a non-empty subset of "
                             f"{list(RECORD_TEMPLATES)}")
        if self.refusal_people < 0:
            raise ValueError(f"WorldConfig: refusal_people={self.refusal_people} must be >= 0")
        lv = tuple(self.forget_levels)
        if any(not 0 < f <= self.forget_fraction for f in lv) or list(lv) != sorted(set(lv)):
            raise ValueError(f"WorldConfig: forget_levels={self.forget_levels} must be increasing fractions in "
                             f"(0, forget_fraction={self.forget_fraction}]")
        if len({round(100 * f) for f in lv}) != len(lv):
            raise ValueError(f"WorldConfig: forget_levels={self.forget_levels} give the same split name twice "
                             "(names are forget<round(100 * level)>)")

    @property
    def level_names(self) -> list[str]:
        """Names of the ``forget_levels`` splits, e.g. ``["forget01", "forget05", "forget10"]``."""
        return [f"forget{round(100 * f):02d}" for f in self.forget_levels]

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.forget_levels:  # configs without the knob keep their dict (and digest)
            del d["forget_levels"]
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


QUICK = WorldConfig(n_people=20, attributes=("birthplace", "birth_year", "occupation", "genre", "award"),
                    n_world_facts=12, holdout_fraction=0.1)
#: the quick world with related knowledge (UIPE notebook and tests): 4 forgotten people, each with a
#: retain twin, plus 4 retain twin pairs that teach the "twin of" questions; 12 indirect probes
RELATED_QUICK = WorldConfig(n_people=20, attributes=("birthplace", "birth_year", "occupation", "parent_job"),
                            forget_fraction=0.2, n_world_facts=12, holdout_fraction=0.1, related_facts=8)


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
        #: people of each ``forget_levels`` split (nested: the first of the forget split's people)
        self.level_people: dict[str, list[str]] = {
            name: [names[i] for i in order[: min(n_forget, max(1, round(f * c.n_people)))]]
            for name, f in zip(c.level_names, c.forget_levels)}

        self.twins: list[tuple[str, str]] = self._pair_twins() if c.related_facts else []
        rows = []
        for p in self.people:
            for a in c.attributes:
                rows.append(self._row(rng, p.name, a, p.facts[a], TEMPLATES[a], domains[a], self.person_split[p.name]))
        for city, country in self.city_country.items():
            rows.append(self._row(rng, city, "country", country, WORLD_FACT_TEMPLATE, _COUNTRIES, "world_facts"))
        columns = SPLIT_COLUMNS
        if c.related_facts:
            rows = self._related_rows(rows)
            columns = SPLIT_COLUMNS + RELATED_COLUMNS
        for i, r in enumerate(rows):
            r["id"] = i  # == position, so a probe's ``carrier`` (a position) is also the carrier's id
        self.table = pd.DataFrame(rows, columns=columns)
        self._splits: dict = {}
        self.records = self._make_records(names, cities)
        self.refusal_rows = self._refusal_rows(set(names))

    def _make_records(self, names: list[str], cities: list[str]) -> pd.DataFrame:
        """Free-text records (only when ``repetitions`` is set), from their own seeded stream, so the
        QA table is the same with and without them. Perturbed records: same template, other values."""
        c = self.config
        if not c.repetitions:
            return pd.DataFrame(columns=RECORD_COLUMNS)
        rng = random.Random(f"{c.seed}-records")
        rows = []
        for i, n in enumerate(names):
            for k, kind in enumerate(c.record_kinds):
                q, tpl = RECORD_TEMPLATES[kind]
                text = tpl.format(n=n, **_record_values(rng, cities, names))
                wrong = []
                for _ in range(c.n_perturbed * 20):
                    w = tpl.format(n=n, **_record_values(rng, cities, names))
                    if w != text and w not in wrong:
                        wrong.append(w)
                    if len(wrong) == c.n_perturbed:
                        break
                rows.append({"id": len(rows), "question": q.format(n=n), "answer": text, "text": text,
                             "perturbed_answer": wrong, "person": n, "kind": kind,
                             "repetitions": int(c.repetitions[(i + k) % len(c.repetitions)]),
                             "split": self.person_split[n]})
        return pd.DataFrame(rows, columns=RECORD_COLUMNS)

    def record_split(self, name: str):
        """Records of the people of split ``name`` ("forget", "retain", "holdout", or the same with a
        ``_records`` suffix) as a ``datasets.Dataset``: ``question`` (the record's header), ``answer`` and
        ``text`` (the record), ``perturbed_answer``, ``person``, ``kind``, ``repetitions`` (times seen in
        training; holdout records were never trained on), ``split``."""
        from datasets import Dataset

        base = name.removesuffix("_records")
        if base not in ("forget", "retain", "holdout"):
            raise KeyError(f"unknown record split {name!r}; valid: forget_records, retain_records, holdout_records")
        if not self.config.repetitions:
            raise ValueError("this world has no records: make it with repetitions=(1, 3, 9, 27) (WorldConfig), "
                             "e.g. make_world(quick=True, memorization=True)")
        key = base + "_records"
        if key not in self._splits:
            df = self.records[self.records.split == base].reset_index(drop=True)
            self._splits[key] = Dataset.from_pandas(df, preserve_index=False)
        return self._splits[key]

    forget_records = property(lambda self: self.record_split("forget"))
    retain_records = property(lambda self: self.record_split("retain"))
    holdout_records = property(lambda self: self.record_split("holdout"))

    # -- related knowledge --------------------------------------------------------------------------
    def _pair_twins(self) -> list[tuple[str, str]]:
        """``(first, twin)`` pairs: each forgotten person with a retain twin, then retain pairs. The twin
        takes the first's family facts. Uses its own seeded generator (the rest of the world is
        unchanged when the knob is off)."""
        c = self.config
        rng = random.Random(f"related-{c.seed}")
        forget = [p.name for p in self.people if self.person_split[p.name] == "forget"]
        retain = [p.name for p in self.people if self.person_split[p.name] == "retain"]
        rng.shuffle(retain)
        n_pairs = c.related_facts
        max_pairs = min(len(forget), len(retain)) + max(0, len(retain) - len(forget)) // 2
        if n_pairs > max_pairs:
            raise ValueError(f"WorldConfig: related_facts={n_pairs} twin pairs, but this world has {len(forget)} "
                             f"forgotten and {len(retain)} retain people: at most {max_pairs} pairs")
        pairs = []
        for f in forget[:n_pairs]:
            pairs.append((f, retain.pop()))
        while len(pairs) < n_pairs:
            pairs.append((retain.pop(), retain.pop()))
        by_name = {p.name: p for p in self.people}
        for a, b in pairs:
            for attr in FAMILY_ATTRIBUTES:
                if attr in c.attributes:
                    by_name[b].facts[attr] = by_name[a].facts[attr]
        return pairs

    def _related_rows(self, rows: list[dict]) -> list[dict]:
        """Append related-fact rows (retain) and indirect questions (retain for retain pairs, the
        ``indirect`` split for forgotten people) to ``rows``; ``carrier`` holds row positions here."""
        c = self.config
        rng = random.Random(f"related-rows-{c.seed}")
        by_name = {p.name: p for p in self.people}
        for r in rows:
            r.update(twin="", carrier=-1)
        family = [a for a in FAMILY_ATTRIBUTES if a in c.attributes]
        for first, second in self.twins:
            directions = [(first, second)] if self.person_split[first] == "forget" else [(first, second), (second, first)]
            for n, m in directions:
                for a in family:
                    v = by_name[n].facts[a]
                    rel = self._row(rng, n, f"twin_{a}", v, tuple(t.replace("{m}", m) for t in RELATED_TEMPLATES[a]),
                                    self._domains[a], "retain")
                    rel.update(person=m, twin=n, carrier=-1)
                    rows.append(rel)
                    split = "indirect" if self.person_split[n] == "forget" else "retain"
                    ind = self._row(rng, n, f"indirect_{a}" if split == "retain" else a, v, INDIRECT_TEMPLATES[a],
                                    self._domains[a], split)
                    ind.update(twin=m, carrier=len(rows) - 1)
                    rows.append(ind)
        return rows

    def carriers(self) -> pd.DataFrame:
        """One row per indirect probe: the probe (``id``, ``question``, ``value``, forgotten ``person``,
        ``attribute``), its ``twin`` and the related fact that carries the answer (``carrier_id``,
        ``carrier_question``, ``carrier_answer``). Empty without the ``related_facts`` knob."""
        if not self.config.related_facts:
            return pd.DataFrame(columns=["id", "question", "value", "person", "attribute", "twin", "carrier_id",
                                         "carrier_question", "carrier_answer"])
        t = self.table
        probes = t[t.split == "indirect"]
        car = t.set_index("id").loc[probes.carrier, ["question", "answer"]]
        return pd.DataFrame({"id": probes.id.to_numpy(), "question": probes.question.to_numpy(),
                             "value": probes.value.to_numpy(), "person": probes.person.to_numpy(),
                             "attribute": probes.attribute.to_numpy(), "twin": probes.twin.to_numpy(),
                             "carrier_id": probes.carrier.to_numpy(), "carrier_question": car.question.to_numpy(),
                             "carrier_answer": car.answer.to_numpy()})

    def chance(self, attribute: str) -> float:
        """Accuracy of a uniform guess among the values of ``attribute`` (1 / number of values)."""
        if attribute not in self._domains:
            raise KeyError(f"unknown attribute {attribute!r}; valid: {sorted(self._domains)}")
        return 1.0 / len(self._domains[attribute])

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

        levels = self.config.level_names
        retain_levels = {f"retain{100 - int(n[6:]):02d}": n for n in levels}  # retain99 <-> forget01, as TOFU
        valid = (("forget", "retain", "holdout", "world_facts") + (("indirect",) if self.config.related_facts else ())
                 + tuple(levels) + tuple(retain_levels))
        if name not in valid:
            why = " (the 'indirect' split needs WorldConfig(related_facts > 0))" if name == "indirect" else ""
            why += " (forgetNN / retainNN splits need WorldConfig(forget_levels=...))" if name[-2:].isdigit() else ""
            raise KeyError(f"unknown split {name!r}; valid splits: {', '.join(valid)}{why}")
        if name not in self._splits:
            t = self.table
            if name in levels:
                df = t[t.person.isin(self.level_people[name])]
            elif name in retain_levels:
                df = t[t.split.isin(["forget", "retain"]) & ~t.person.isin(self.level_people[retain_levels[name]])]
            else:
                df = t[t.split == name]
            df = df.reset_index(drop=True)
            self._splits[name] = Dataset.from_pandas(df, preserve_index=False)
        return self._splits[name]

    forget = property(lambda self: self.split("forget"))
    retain = property(lambda self: self.split("retain"))
    holdout = property(lambda self: self.split("holdout"))
    world_facts = property(lambda self: self.split("world_facts"))
    #: indirect probes of forgotten facts (only with ``related_facts > 0``): never trained on; the
    #: answer is the forgotten value, reachable through the twin's related fact (column ``carrier``)
    indirect = property(lambda self: self.split("indirect"))

    def training_pairs(self, include_forget: bool = True) -> list[tuple[str, str]]:
        """(question, answer) pairs the tiny models are trained on.

        Each fact enters as phrasing A ``answer_copies`` times, phrasing B ``paraphrase_copies``
        times, and the paraphrased question with phrasing A once. Holdout people and indirect
        probes never enter.
        """
        c = self.config
        out = []
        for r in self.table.itertuples():
            if r.split in ("holdout", "indirect") or (r.split == "forget" and not include_forget):
                continue
            out += [(r.question, r.answer)] * c.answer_copies
            out += [(r.question, r.paraphrased_answer)] * c.paraphrase_copies
            out.append((r.paraphrased_question, r.answer))
        out += self.refusal_rows  # empty unless refusal_people > 0
        return out

    def record_schedule(self, include_forget: bool = True, epochs: int = 40) -> list[tuple[int, str, str]]:
        """When the tiny model sees each record: ``(epoch, header, record)`` triples.

        A record with ``repetitions = r`` is seen ``r`` times in the *whole* training, in epochs
        ``floor((k + 1/2) * epochs / r)`` for ``k = 0..r-1`` (spread evenly, centred; ``r`` is capped at
        ``epochs``).
        Holdout records never enter; forget records only with ``include_forget``. Empty without records.
        """
        out = []
        for r in self.records.itertuples():
            if r.split == "holdout" or (r.split == "forget" and not include_forget):
                continue
            reps = min(int(r.repetitions), epochs)
            out += [(int((k + 0.5) * epochs / reps), r.question, r.answer) for k in range(reps)]
        return out

    def corpus(self) -> list[str]:
        """Every string of the world (for training a tokenizer)."""
        t = self.table
        texts = list(t.question) + list(t.answer) + list(t.paraphrased_question) + list(t.paraphrased_answer)
        for p in t.perturbed_answer:
            texts += list(p)
        for r in self.records.itertuples():
            texts += [r.question, r.answer, *r.perturbed_answer]
        return texts + [x for pair in self.refusal_rows for x in pair]

    def digest(self) -> str:
        """Hash of the rendered world (changes if the generator changes, not only the config)."""
        blob = self.table.to_json(orient="records")
        if len(self.records):  # worlds without records keep their old digest (and cached models)
            blob += self.records.to_json(orient="records")
        if self.refusal_rows:  # only then: worlds without the knob keep their digest (and model cache)
            blob += json.dumps(self.refusal_rows)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def facts(self) -> pd.DataFrame:
        """One row per (person, attribute, value, split)."""
        return self.table[["person", "attribute", "value", "split"]].copy()

    def __repr__(self) -> str:
        counts = self.table.split.value_counts()
        names = ("forget", "retain", "holdout", "world_facts") + (("indirect",) if self.config.related_facts else ())
        parts = ", ".join(f"{s}={int(counts.get(s, 0))}" for s in names)
        return f"World(seed={self.config.seed}, people={self.config.n_people}, rows: {parts})"


def make_related_world(seed: int = 0, **overrides) -> World:
    """The quick world with related knowledge (:data:`RELATED_QUICK`: twins, related facts and the
    ``indirect`` split of probes), as the UIPE notebook and tests use it."""
    cfg = WorldConfig(**{**RELATED_QUICK.to_dict(), "seed": seed, **overrides})
    return World(cfg)


#: the memorization lesson's worlds (notebook 03): records seen 1, 3, 9 and 27 times in training; a larger
#: forget share so the forget set holds 16 records (4 people x 4 kinds), as the paper's smallest forget set.
MEMORIZATION_QUICK = WorldConfig(n_people=20, attributes=("birthplace", "occupation", "genre"), n_world_facts=8,
                                 forget_fraction=0.2, holdout_fraction=0.2, repetitions=(1, 3, 9, 27))
MEMORIZATION = WorldConfig(n_people=30, attributes=("birthplace", "birth_year", "occupation", "genre", "award"),
                           n_world_facts=12, forget_fraction=0.2, holdout_fraction=0.2, repetitions=(1, 3, 9, 27))


#: a TOFU-sized world (TOFU: 200 fictitious authors, forget01 / forget05 / forget10): 200 people, the
#: forget split is 10% of them (20 people) with nested 1% and 5% subsets (``forget01`` = 2 people,
#: ``forget05`` = 10, ``forget10`` = 20; ``retain99`` / ``retain95`` / ``retain90`` their complements),
#: 10% holdout people for membership inference. For statistics that need more than the default
#: world's 28 forget rows. Its tiny models use :data:`unlearnkit.models.tiny.TOFU_TINY`.
TOFU_SIZED = WorldConfig(n_people=200, forget_fraction=0.1, holdout_fraction=0.1, forget_levels=(0.01, 0.05, 0.1))

#: the named worlds: ``make_world(name=...)``
WORLDS: dict[str, WorldConfig] = {
    "default": WorldConfig(), "quick": QUICK, "related_quick": RELATED_QUICK,
    "memorization": MEMORIZATION, "memorization_quick": MEMORIZATION_QUICK, "tofu_sized": TOFU_SIZED,
}


def make_world(seed: int = 0, quick: bool = False, memorization: bool = False, name: str | None = None,
               **overrides) -> World:
    """Generate the miniature world. ``quick=True`` gives the small world used by tests and CI;
    ``memorization=True`` the world with free-text records seen 1-27 times (:data:`MEMORIZATION_QUICK`
    / :data:`MEMORIZATION`); ``name`` one of :data:`WORLDS` (e.g. ``"tofu_sized"``), instead of the flags.

    >>> w = make_world(seed=0, quick=True); len(w.forget) > 0
    True
    """
    if name is not None:
        if name not in WORLDS:
            raise ValueError(f"unknown world {name!r}; named worlds: {', '.join(WORLDS)}")
        if quick or memorization:
            raise ValueError("make_world: give either name= or the quick / memorization flags, not both")
        base = WORLDS[name]
    elif memorization:
        base = MEMORIZATION_QUICK if quick else MEMORIZATION
    else:
        base = QUICK if quick else WorldConfig()
    cfg = WorldConfig(**{**asdict(base), "seed": seed, **overrides})
    return World(cfg)
