"""Self-checking exercises of the notebooks.

Each exercise has a ``check_<name>`` function that a notebook's check cell calls with the
student's answer (a function or a value). It prints a line starting with ✓ when the answer is
right (and returns a true :class:`Outcome`), raises :class:`ExerciseError` (an ``AssertionError``) saying *in plain words* what is wrong
when it is not, and only prints a hint while the exercise is still the untouched stub (a
function raising ``NotImplementedError``, or the placeholder ``...``), so that a notebook runs
top to bottom before anyone has filled anything in.

Solutions are for instructors: ``reference(name)`` returns the reference function or answer and
``solution(name)`` its self-contained source. The notebooks hold only the stubs; the course build
(:mod:`unlearnkit.course`) writes a solution version of every notebook with each exercise cell
filled from ``solution(name)``, so no solution is written twice. ``EXERCISES`` lists them all, each
with its notebook, its kind (``KINDS``) and its task.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import math
import pprint
import re
import textwrap
from collections import Counter
from typing import NamedTuple

__all__ = ["ExerciseError", "check_rest_mass", "check_crossover", "check_states_fact", "check_token_entropy",
           "check_targeted", "check_lowest_token_entropy", "check_min_k", "check_closest_to_retain", "reference",
           "solution", "EXERCISES", "check_edit_change", "check_changed_answers"]


class ExerciseError(AssertionError):
    """The answer is wrong; the message says why."""


class Outcome:
    """What a check returns: true if the answer passed, false while the exercise is not done yet.
    It displays nothing in a notebook (the check has already printed its message)."""

    def __init__(self, passed: bool, message: str):
        self.passed, self.message = passed, message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Outcome(passed={self.passed})"

    def _ipython_display_(self):
        pass


def _ok(msg: str) -> Outcome:
    print(f"✓ {msg}")
    return Outcome(True, msg)


def _pending(name: str, hint: str) -> Outcome:
    msg = f"… exercise '{name}' is not done yet. {hint}"
    print(msg)
    return Outcome(False, msg)


def _call(name: str, fn, *args):
    """Call the student's function; a NotImplementedError means 'not done yet' (None is returned)."""
    if not callable(fn):
        raise ExerciseError(f"'{name}' should be a function, but it is a {type(fn).__name__}")
    try:
        return fn(*args)
    except NotImplementedError:
        return NotImplemented


def _require_number(got, what: str):
    if not isinstance(got, (int, float)) or (isinstance(got, float) and math.isnan(got)):
        raise ExerciseError(f"For {what} your function returned {got!r}, not a number.")


# -- reference solutions (instructors: reference(name), solution(name)) ---------------------------

def _rest_mass(answers) -> float:
    """Mass on everything else: 1 - the sum over *distinct* answer texts, clipped at 0."""
    seen = {}
    for text, mass in answers:
        key = " ".join(str(text).split())
        seen.setdefault(key, float(mass))
    return max(0.0, 1.0 - sum(seen.values()))


def _states_fact(answer: str, value: str) -> bool:
    """True if ``answer`` states ``value`` as a whole word (case-insensitive)."""
    return re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", answer.lower()) is not None


def _token_entropy(tokens) -> float:
    """Normalized unigram entropy of a token list: H / log2(n), 0 if n <= 1."""
    n = len(tokens)
    if n <= 1:
        return 0.0
    h = -sum(c / n * math.log2(c / n) for c in Counter(tokens).values())
    return h / math.log2(n)


def _min_k(token_logprobs, k: float = 0.4) -> float:
    """Min-K%: minus the mean of the lowest max(1, int(k * T)) token log-probs (0 for no tokens)."""
    lp = sorted(float(x) for x in token_logprobs)
    if not lp:
        return 0.0
    n = max(1, int(k * len(lp)))
    return -sum(lp[:n]) / n


_TARGETED = {"ga": "untargeted", "npo": "untargeted", "me": "untargeted", "idk_nll": "targeted",
             "idk_ap": "targeted"}

_REFERENCE = {"rest_mass": _rest_mass, "states_fact": _states_fact, "token_entropy": _token_entropy,
              "targeted": _TARGETED, "min_k": _min_k}

#: the kinds of exercise, each with what the student does
KINDS = {
    "predict": "predict before measuring: write down what will happen, then run the measurement",
    "implement": "implement a loss or metric from its formula",
    "choose": "choose a hyperparameter from a measured trade-off",
    "break": "break an unlearned model: an attack that brings forgotten answers back",
    "read": "read a result off a table or a widget",
}


class Exercise(NamedTuple):
    notebook: str  #: the notebook's number ("01")
    kind: str      #: a key of KINDS
    task: str      #: the task in one line


#: every exercise of the course, in course order: name -> Exercise(notebook, kind, task)
EXERCISES = {
    "crossover": Exercise("01", "read", "the first probe step at which the paraphrase carries more mass than the target"),
    "rest_mass": Exercise("01", "implement", "mass on 'everything else' from (text, mass) pairs, each distinct answer "
                          "counted once"),
    "states_fact": Exercise("01", "implement", "does a generated answer still state the fact's value?"),
    "token_entropy": Exercise("02", "implement", "normalized unigram entropy of a generated answer's tokens"),
    "targeted": Exercise("02", "read", "which objectives are targeted (train towards a chosen answer) and which are not"),
    "lowest_token_entropy": Exercise("02", "read", "which unlearned model's answers have the lowest token entropy"),
    "memorization_accuracy": Exercise("03", "implement", "MA of a sequence by hand: greedy predictions vs the true "
                                      "tokens"),
    "extractable": Exercise("03", "predict", "which forget sequences the extraction attack still recovers after "
                            "gradient ascent"),
    "extrapolate": Exercise("04", "implement", "UIPE's extrapolation θ_u + α(θ_u − θ0) on a list of weights"),
    "alpha_for_budget": Exercise("04", "choose", "the α of the sweep that forgets the indirect route best within a "
                                 "utility budget"),
    "carrier": Exercise("04", "read", "whose related fact carried the answer of an indirect probe"),
    "edit_change": Exercise("05", "implement", "how much an edit changes the layer's output on a key (null-space "
                            "property)"),
    "changed_answers": Exercise("05", "predict", "which questions' greedy answers an edit changed"),
    "min_k": Exercise("06", "implement", "the Min-K% membership score of a sequence's token log-probs"),
    "closest_to_retain": Exercise("06", "read", "which unlearned model's forget-vs-holdout AUC is closest to the "
                                  "retain model's"),
    "relearning_prediction": Exercise("06", "predict", "before the attacks run: does relearning bring back more for GA "
                                      "than for the retain model?"),
    "relearn_attack": Exercise("06", "break", "a relearning attack that brings GA's held-back forget answers back "
                               "from a few forget rows"),
}


def exercise_table():
    """The exercises as a table (name, notebook, kind, task), in course order."""
    import pandas as pd

    return pd.DataFrame([{"exercise": k, **e._asdict()} for k, e in EXERCISES.items()])


#: an unlearned model whose forget-vs-holdout AUC is within this of the retain model's passes the
#: attack (notebook 06 narrates its MIA table with the same margin)
AUC_LIKE_RETAIN = 0.1


def _auc_gaps(summary, metric: str = "mia_min_k", retain: str = "retain", exclude=("target",)):
    """Each unlearned model's distance from the retain model's forget-vs-holdout AUC."""
    d = summary[(summary.metric == metric) & (summary.split == "forget_vs_holdout")].set_index("model")["value"]
    return (d.drop([retain, *[e for e in exclude if e in d.index]]) - d[retain]).abs()


def _closest(summary, metric: str = "mia_min_k", retain: str = "retain", exclude=("target",)):
    """The unlearned model whose forget-vs-holdout AUC is closest to the retain model's."""
    return _auc_gaps(summary, metric, retain, exclude).idxmin()


def _lowest(summary):
    d = summary[(summary.metric == "token_entropy") & (summary.split == "forget")].set_index("model")["value"]
    return d.idxmin()


def _crossover_step(result):
    """The first probe step at which the mean paraphrase mass exceeds the mean target mass (None: never)."""
    return _crossover(result)[0]


def _changed_answers(before, after):
    """The ids whose greedy answer differs between ``before`` and ``after`` (dicts id -> answer)."""
    return {int(i) for i in before if before[i] != after.get(i)}


#: exercises whose answer depends on the run: name -> the function computing it from the run (the
#: check's own arguments, the answer left out)
_COMPUTED = {"crossover": _crossover_step, "lowest_token_entropy": _lowest, "closest_to_retain": _closest,
             "changed_answers": _changed_answers}


def reference(name: str, *run, **options):
    """The reference solution of exercise ``name`` (a function or an answer); for instructors.
    Answers that depend on the run are computed from it, from the same arguments the check takes
    before the answer: ``reference("crossover", result)``, ``reference("lowest_token_entropy", summary)``."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; exercises: {sorted(EXERCISES)}")
    if name in _COMPUTED:
        if not run:
            raise TypeError(f"the answer to {name!r} depends on the run: reference({name!r}, <the run's result "
                            "or table>)")
        return _COMPUTED[name](*run, **options)
    return _REFERENCE[name]


def solution_function(name: str) -> str | None:
    """The name of the function :func:`solution` defines last (the reference), or None when the
    answer is a value (``solution`` is then its literal)."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; exercises: {sorted(EXERCISES)}")
    ref = _COMPUTED.get(name) or _REFERENCE[name]
    return ref.__name__ if callable(ref) else None


def solution(name: str) -> str:
    """The reference solution's source code, self-contained (its imports and the helpers it calls
    come first), or the literal of a value answer; for instructors and the course's solution build."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; exercises: {sorted(EXERCISES)}")
    ref = _COMPUTED.get(name) or _REFERENCE[name]
    if not callable(ref):
        return pprint.pformat(ref, sort_dicts=False)
    imports, blocks = [], []
    _gather(ref, imports, blocks, set())
    head = "\n".join(dict.fromkeys(imports))
    return (head + "\n\n\n" if head else "") + "\n\n".join(blocks)


def _gather(fn, imports: list, blocks: list, seen: set) -> None:
    """Append the imports ``fn`` needs and the sources of the module's helpers it calls (helpers first)."""
    if fn.__name__ in seen:
        return
    seen.add(fn.__name__)
    src = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(src)
    bound = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    bound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
              for a in n.names}
    free = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound
    for n in sorted(free - {fn.__name__} - set(dir(builtins))):
        obj = globals().get(n)
        if obj is None:
            raise RuntimeError(f"the solution of {fn.__name__} uses {n!r}, which unlearnkit.exercises does not define")
        if inspect.ismodule(obj):
            imports.append(f"import {obj.__name__}" + ("" if obj.__name__ == n else f" as {n}"))
        elif inspect.isfunction(obj) and obj.__module__ == __name__:
            _gather(obj, imports, blocks, seen)
        elif getattr(obj, "__module__", __name__) != __name__ and (inspect.isclass(obj) or inspect.isfunction(obj)):
            imports.append(f"from {obj.__module__} import {n}")
        else:
            imports.append(f"from {__name__} import {n}")
    blocks.append(src.rstrip() + "\n")


# -- notebook 01: squeezing ---------------------------------------------------------------------------

def check_rest_mass(fn) -> Outcome:
    """``fn(answers) -> float``: ``answers`` is a list of ``(text, mass)`` pairs, where the same text
    may appear more than once (the greedy answer can *be* the paraphrase); return the mass left
    for everything else: ``1 - Σ`` over distinct texts (whitespace ignored), clipped at 0."""
    name = "rest_mass"
    cases = [
        ([("Ann was born in Oslo.", 0.6), ("Oslo is the birthplace of Ann.", 0.3)], 0.1,
         "two distinct answers"),
        ([("Ann was born in Oslo.", 0.05), ("Oslo is the birthplace of Ann.", 0.8),
          ("Oslo is the birthplace of Ann.", 0.8)], 0.15,
         "the greedy answer is the paraphrase"),
        ([("Ann was born in Oslo.", 0.5), (" Ann was born in  Oslo. ", 0.5), ("Ann was born in Rome.", 0.2)], 0.3,
         "the same answer with different spaces"),
        ([("a", 0.7), ("b", 0.6)], 0.0, "masses that add up to more than 1 (rounding)"),
        ([], 1.0, "no answers at all"),
    ]
    for answers, want, what in cases:
        got = _call(name, fn, list(answers))
        if got is NotImplemented:
            return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: keep one mass per "
                                  "distinct text (a dict keyed by the text, spaces normalized), then 1 - sum, "
                                  "and never below 0.")
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            raise ExerciseError(f"{name} should return a number, got {got!r} for {answers}")
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        naive = 1.0 - sum(m for _, m in answers)
        if math.isclose(got, naive, abs_tol=1e-9) and naive < 0:
            raise ExerciseError(f"For {what} your answer is {got:.3g}: a probability cannot be negative. "
                                "Clip it at 0 (the answers' masses can add up to a little more than 1).")
        if math.isclose(got, naive, abs_tol=1e-9) or math.isclose(got, max(0.0, naive), abs_tol=1e-9):
            raise ExerciseError(f"For {what} you returned {got:.3g}, which counts a repeated answer twice. "
                                f"The same sentence is one event: its mass must be subtracted once (expected {want:.3g}).")
        raise ExerciseError(f"For {what} ({answers}) the mass on everything else is {want:.3g}, "
                            f"but your function returned {got:.3g}.")
    return _ok("rest_mass counts each distinct answer once and never goes below 0.")


def _crossover(result, split: str = "forget"):
    s = result.summary()
    s = s[s.split == split].pivot_table(index="step", columns="quantity", values="value")
    over = s.index[s["paraphrase"] > s["target"]]
    return int(over[0]) if len(over) else None, s


def check_crossover(result, answer) -> Outcome:
    """``answer``: the first recorded probe step at which the *mean* paraphrase mass exceeds the
    mean target mass on the forget probes of ``result`` (None if it never does)."""
    name = "crossover"
    if answer is ...:
        return _pending(name, "Set `crossover_step` to a step number (or None if it never happens). Hint: move "
                              "the explorer's slider, or read result.summary().")
    want, s = _crossover(result)
    if answer == want:
        if want is None:
            return _ok("Right: in this run the paraphrase never overtakes the target.")
        row = s.loc[want]
        return _ok(f"Right: at step {want} the paraphrase has {row['paraphrase']:.3f} and the target "
                   f"{row['target']:.3f}.")
    if want is None:
        raise ExerciseError("In this run the paraphrase never carries more mass than the target: the answer is None.")
    if answer is None:
        raise ExerciseError(f"It does happen: look at step {want} and after.")
    if not isinstance(answer, (int, float)) or answer not in s.index:
        raise ExerciseError(f"{answer!r} is not a recorded probe step; the recorded steps are {list(s.index)}.")
    row = s.loc[answer]
    if row["paraphrase"] <= row["target"]:
        raise ExerciseError(f"At step {answer} the target still has more mass ({row['target']:.3f}) than the "
                            f"paraphrase ({row['paraphrase']:.3f}). Look later.")
    raise ExerciseError(f"At step {answer} the paraphrase is ahead, but it already was at an earlier step: "
                        "the question asks for the first one.")


def check_states_fact(fn) -> Outcome:
    """``fn(answer, value) -> bool``: does the generated ``answer`` state ``value``? Case does not
    matter; the value must appear as a whole word (not inside a longer word or number)."""
    name = "states_fact"
    cases = [
        ("Xarira Haner was born in Stonevale.", "Stonevale", True, "the original phrasing"),
        ("Stonevale is the birthplace of Xarira Haner.", "Stonevale", True, "a paraphrase"),
        ("stonevale is where she was born", "Stonevale", True, "lower case"),
        ("Xarira Haner was born in Glenwick.", "Stonevale", False, "a wrong value"),
        ("Xarira Haner was born in 19985.", "1998", False, "the value inside a longer number"),
        ("Xarira Haner was born in 1998.", "1998", True, "a year"),
        ("I'm not sure about that.", "Stonevale", False, "a refusal"),
        ("Haner Haner Haner born born", "Stonevale", False, "collapsed output"),
    ]
    for answer, value, want, what in cases:
        got = _call(name, fn, answer, value)
        if got is NotImplemented:
            return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: lower-case both, "
                                  "and match the value as a whole word (re.search with \\b or lookarounds).")
        if bool(got) != want:
            if want:
                raise ExerciseError(f"{what}: {answer!r} does state {value!r}, but your function says it does not.")
            raise ExerciseError(f"{what}: {answer!r} does not state {value!r}, but your function says it does.")
    return _ok("states_fact recognises the fact in any phrasing, and only the fact.")


# -- notebook 02: entropy ------------------------------------------------------------------------------

def check_token_entropy(fn) -> Outcome:
    """``fn(tokens) -> float``: normalized unigram entropy ``H / log2(n)`` of a token list (spec
    B7); 0 when ``n <= 1``."""
    name = "token_entropy"
    cases = [(["a", "a", "b", "c"], 0.75, "['a', 'a', 'b', 'c']"),
             (list("abcd"), 1.0, "four different tokens"),
             (["born"] * 6, 0.0, "the same token six times"),
             (["Paris"], 0.0, "a one-token answer"),
             ([], 0.0, "an empty answer")]
    for tokens, want, what in cases:
        try:
            got = _call(name, fn, list(tokens))
        except ZeroDivisionError:
            raise ExerciseError(f"For {what} your function divides by zero: log2(1) = 0. The token entropy of an "
                                "answer with 0 or 1 tokens is defined as 0; return it before dividing.") from None
        except ValueError as e:
            raise ExerciseError(f"For {what} your function raised ValueError ({e}). Answers of 0 or 1 tokens "
                                "have token entropy 0 by definition.") from None
        if got is NotImplemented:
            return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: count each token "
                                  "(collections.Counter), f = count / n, H = -Σ f log2 f, return H / log2(n).")
        _require_number(got, what)
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        if len(tokens) > 1 and math.isclose(got, want * math.log2(len(tokens)), abs_tol=1e-6):
            raise ExerciseError(f"For {what} you returned {got:.4g}, the entropy H in bits. Normalize it: divide "
                                "by log2(n), the largest entropy n tokens can have, so the result is in [0, 1].")
        if len(tokens) > 1 and math.isclose(got, want * math.log(len(tokens)), abs_tol=1e-6):
            raise ExerciseError(f"For {what} you returned {got:.4g}, the entropy H in nats. Normalize it by "
                                "log(n) (same base as H) so the result is in [0, 1].")
        raise ExerciseError(f"For {what} the token entropy is {want:.4g}, but your function returned {got:.4g}.")
    return _ok("token_entropy matches the definition (and is 0 for repeated or one-token answers).")


def check_targeted(answer: dict) -> Outcome:
    """``answer``: ``{objective: "targeted" | "untargeted"}`` for ga, npo, me, idk_nll, idk_ap.
    Targeted objectives train the model towards a chosen answer; untargeted ones only push it
    away from the forget answers."""
    name = "targeted"
    if not isinstance(answer, dict) or not answer or all(v is ... for v in answer.values()):
        return _pending(name, "Fill in the dict: each objective is 'targeted' or 'untargeted'.")
    missing = [k for k in _TARGETED if answer.get(k, ...) is ...]
    if missing:
        return _pending(name, f"Still to fill in: {missing}.")
    why = {"ga": "gradient ascent only pushes the forget answer down; it names no answer to give instead",
           "npo": "NPO only pushes the forget answer down (relative to the reference model)",
           "me": "ME pushes the prediction towards the uniform distribution: no particular answer",
           "idk_nll": "IDK trains the model to answer with a refusal from the bank: a chosen answer",
           "idk_ap": "IDK+AP trains towards a refusal (and keeps retain answers): a chosen answer"}
    for k, want in _TARGETED.items():
        got = str(answer[k]).strip().lower()
        if got not in ("targeted", "untargeted"):
            raise ExerciseError(f"{k}: write 'targeted' or 'untargeted', not {answer[k]!r}.")
        if got != want:
            raise ExerciseError(f"{k} is {want}: {why[k]}.")
    return _ok("Right: GA, NPO and ME are untargeted; IDK and IDK+AP are targeted.")


def check_lowest_token_entropy(summary, answer) -> Outcome:
    """``answer``: the model (a ``model`` value of ``summary``, a :func:`unlearnkit.summarize`
    table) whose greedy answers on the forget split have the lowest mean token entropy."""
    name = "lowest_token_entropy"
    if answer is ...:
        return _pending(name, "Set `lowest` to a model name from the table.")
    d = summary[(summary.metric == "token_entropy") & (summary.split == "forget")].set_index("model")["value"]
    if d.empty:
        raise ExerciseError("the table has no token_entropy rows on the forget split; evaluate with "
                            "metrics=['token_entropy', ...] first")
    want = d.idxmin()
    if answer not in d.index:
        raise ExerciseError(f"{answer!r} is not a model of the table; the models are {list(d.index)}.")
    if answer == want or math.isclose(d[answer], d[want], abs_tol=1e-12):
        return _ok(f"Right: {answer}'s answers have the lowest token entropy ({d[answer]:.3f}): the most "
                   "repetitive output.")
    raise ExerciseError(f"{answer} has token entropy {d[answer]:.3f}, but {want} is lower ({d[want]:.3f}).")


# -- notebook 06: is it really gone? -------------------------------------------------------------------

def check_min_k(fn) -> Outcome:
    """``fn(token_logprobs, k) -> float``: the Min-K% score, ``-mean`` of the lowest
    ``max(1, int(k·T))`` of the ``T`` token log-probs (nats; higher = looks less like training data)."""
    name = "min_k"
    cases = [([-0.1, -2.0, -0.5, -3.0, -0.2], 0.4, 2.5, "[-0.1, -2.0, -0.5, -3.0, -0.2] with k=0.4"),
             ([-0.1, -2.0, -0.5, -3.0, -0.2], 1.0, 1.16, "the same log-probs with k=1 (all tokens)"),
             ([-0.3, -0.7], 0.4, 0.7, "two tokens with k=0.4 (int(0.8) = 0, but at least one token counts)"),
             ([-1.5], 0.4, 1.5, "a one-token sequence")]
    for lp, k, want, what in cases:
        try:
            got = _call(name, fn, list(lp), k)
        except ZeroDivisionError:
            raise ExerciseError(f"For {what} your function divides by zero: int(k*T) can be 0. Average at least "
                                "one token: n = max(1, int(k * T)).") from None
        if got is NotImplemented:
            return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: sort the log-probs "
                                  "(lowest first), keep n = max(1, int(k * len(lp))) of them, return minus their mean.")
        _require_number(got, what)
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        if math.isclose(got, -want, abs_tol=1e-6):
            raise ExerciseError(f"For {what} you returned {got:.4g}: the sign is flipped. Min-K% is *minus* the "
                                "mean log-prob, so that a higher score means 'less likely, less like a member'.")
        top = sorted(lp, reverse=True)[:max(1, int(k * len(lp)))]
        if math.isclose(got, -sum(top) / len(top), abs_tol=1e-6):
            raise ExerciseError(f"For {what} you averaged the *highest* log-probs. Min-K% looks at the k% least "
                                "likely tokens: sort ascending and take the first ones.")
        raise ExerciseError(f"For {what} the Min-K% score is {want:.4g}, but your function returned {got:.4g}.")
    return _ok("min_k matches the kit's Min-K% (spec B9), including the at-least-one-token rule.")


def check_closest_to_retain(summary, answer) -> Outcome:
    """``answer``: the unlearned model (not ``target``, not ``retain``) of ``summary`` whose Min-K%
    AUC (forget vs holdout) is closest to the retain model's."""
    name = "closest_to_retain"
    if answer is ...:
        return _pending(name, "Set `closest` to a model name from the AUC table.")
    d = summary[(summary.metric == "mia_min_k") & (summary.split == "forget_vs_holdout")].set_index("model")["value"]
    if d.empty or "retain" not in d.index:
        raise ExerciseError("the table has no mia_min_k AUC of a model named 'retain'; evaluate the retain model "
                            "with the 'mia' suite first")
    if answer in ("retain", "target"):
        raise ExerciseError(f"{answer!r} is a reference point, not an unlearned model; pick one of the others.")
    if answer not in d.index:
        raise ExerciseError(f"{answer!r} is not a model of the table; the models are {list(d.index)}.")
    gaps = _auc_gaps(summary)
    want, gap = gaps.idxmin(), gaps[answer]
    if answer == want or math.isclose(gap, gaps[want], abs_tol=1e-12):
        tied = [m for m in gaps.index if m != answer and math.isclose(gaps[m], gap, abs_tol=5e-4)]
        tie = f" (tied with {', '.join(tied)})" if tied else ""
        if gap <= AUC_LIKE_RETAIN:
            verdict = "by this attack, its forget set looks about as unseen as the retain model's"
        else:
            verdict = (f"yet still more than {AUC_LIKE_RETAIN} away: by this attack no unlearned model's forget set "
                       "looks like data it never saw" + (" (its AUC is below the retain model's: over-unlearning)"
                                                         if d[answer] < d["retain"] else ""))
        return _ok(f"Right: {answer}'s AUC {d[answer]:.3f} is {gap:.3f} from the retain model's {d['retain']:.3f}{tie}, "
                   f"the closest; {verdict}.")
    raise ExerciseError(f"{answer}'s AUC {d[answer]:.3f} is {gap:.3f} from the retain model's {d['retain']:.3f}, "
                        f"but {want}'s ({d[want]:.3f}) is closer.")


# -- notebook 04: related knowledge and UIPE -------------------------------------------------------------

def _extrapolate(theta0, theta_u, alpha):
    """UIPE on lists of numbers: θ_u + α(θ_u − θ0), element by element."""
    return [u + alpha * (u - o) for o, u in zip(theta0, theta_u)]


def _sweep_pivot(table):
    d = table[table.metric.isin(["related_recall", "probability"]) & table.split.isin(["indirect", "retain"])]
    d = d[(d.split == "indirect") & (d.metric == "related_recall") | (d.split == "retain") & (d.metric == "probability")]
    p = d.pivot_table(index="alpha", columns="split", values="value").sort_index()
    if not {"indirect", "retain"} <= set(p.columns):
        raise ExerciseError("the table needs related_recall on the 'indirect' split and probability on the 'retain' "
                            "split (uipe_sweep's default metrics)")
    return p


def _alpha_for_budget(table, budget: float = 0.9) -> float:
    """The swept α with the lowest indirect recall whose retain probability is still >= ``budget`` x
    its value at the smallest α; ties go to the smaller α."""
    p = _sweep_pivot(table)
    ok = p[p.retain >= budget * p.retain.iloc[0] - 1e-12]
    return float(ok.indirect.idxmin())  # idxmin: first (smallest α) among ties


def _carrier(carriers, probe_id) -> str:
    """The twin whose related fact carries the answer of indirect probe ``probe_id``."""
    row = carriers.set_index("id").loc[probe_id]
    return str(row.twin)


_REFERENCE["extrapolate"] = _extrapolate
_COMPUTED["alpha_for_budget"] = _alpha_for_budget
_COMPUTED["carrier"] = _carrier
__all__ += ["check_extrapolate", "check_alpha_for_budget", "check_carrier"]


def check_extrapolate(fn) -> Outcome:
    """``fn(theta0, theta_u, alpha) -> list``: UIPE's ``θ_u + α(θ_u − θ0)`` element by element
    (``theta0``: weights before unlearning, ``theta_u``: after; lists of floats of equal length)."""
    name = "extrapolate"
    cases = [([1.0, 2.0], [2.0, 1.0], 0.25, "two weights, alpha=0.25"),
             ([0.0, 0.0, 0.0], [0.5, -1.0, 2.0], 1.0, "theta0 = 0, alpha=1"),
             ([3.0], [1.0], 0.0, "alpha=0 (must give theta_u back)"),
             ([0.1, -0.2], [0.1, -0.2], 2.0, "no update at all")]
    for o, u, a, what in cases:
        got = _call(name, fn, list(o), list(u), a)
        if got is NotImplemented:
            return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: v = theta_u - theta0 "
                                  "per weight, then theta_u + alpha * v.")
        want = _extrapolate(o, u, a)
        try:
            got = [float(x) for x in got]
        except TypeError:
            raise ExerciseError(f"For {what} your function returned {got!r}, not a list of numbers.") from None
        if len(got) != len(want):
            raise ExerciseError(f"For {what} you returned {len(got)} weights, expected {len(want)}.")
        if all(math.isclose(g, w, abs_tol=1e-9) for g, w in zip(got, want)):
            continue
        if all(math.isclose(g, oo + a * (uu - oo), abs_tol=1e-9) for g, oo, uu in zip(got, o, u)):
            raise ExerciseError(f"For {what} you returned theta0 + alpha*v: that moves only a fraction alpha along the "
                                "update. UIPE starts from the unlearned weights: theta_u + alpha*v (= theta0 + (1+alpha)*v).")
        if all(math.isclose(g, uu - a * (uu - oo), abs_tol=1e-9) for g, oo, uu in zip(got, o, u)):
            raise ExerciseError(f"For {what} you moved back towards theta0 (theta_u - alpha*v). UIPE goes further "
                                "along the unlearning update: theta_u + alpha*v.")
        raise ExerciseError(f"For {what} UIPE gives {want}, but your function returned {got}.")
    return _ok("extrapolate matches UIPE: alpha=0 gives theta_u back, and the update grows by a factor 1 + alpha.")


def check_alpha_for_budget(table, answer, budget: float = 0.9) -> Outcome:
    """``answer``: the α of ``table`` (a :func:`unlearnkit.editing.uipe_sweep` table) with the lowest
    indirect recall (``related_recall`` on ``indirect``) among the α whose retain probability is at
    least ``budget`` times its value at the smallest α; ties go to the smaller α."""
    name = "alpha_for_budget"
    if answer is ...:
        return _pending(name, "Set `alpha_choice` to one of the swept alphas.")
    p = _sweep_pivot(table)
    _require_number(answer, "alpha_choice")
    match = [a for a in p.index if math.isclose(a, float(answer), abs_tol=1e-9)]
    if not match:
        raise ExerciseError(f"alpha={answer} was not swept; the table has alpha in {list(p.index)}.")
    a = match[0]
    floor = budget * p.retain.iloc[0]
    want = _alpha_for_budget(table, budget)
    if p.retain[a] < floor - 1e-12:
        raise ExerciseError(f"At alpha={a:g} the retain probability is {p.retain[a]:.3f}, below the budget "
                            f"{budget:.0%} x {p.retain.iloc[0]:.3f} = {floor:.3f}: too much utility is lost.")
    if math.isclose(a, want, abs_tol=1e-9) or math.isclose(p.indirect[a], p.indirect[want], abs_tol=1e-12) and a <= want:
        return _ok(f"Right: alpha={a:g} keeps retain probability {p.retain[a]:.3f} (>= {floor:.3f}) and brings the "
                   f"indirect recall to {p.indirect[a]:.3f} (from {p.indirect.iloc[0]:.3f}).")
    if math.isclose(p.indirect[a], p.indirect[want], abs_tol=1e-12):
        raise ExerciseError(f"alpha={a:g} ties with alpha={want:g} on indirect recall ({p.indirect[a]:.3f}); the smaller "
                            "alpha costs less utility for the same forgetting: take it.")
    raise ExerciseError(f"alpha={a:g} is within the budget, but alpha={want:g} is too (retain probability "
                        f"{p.retain[want]:.3f}) and leaves less of the indirect route ({p.indirect[want]:.3f} vs "
                        f"{p.indirect[a]:.3f}).")


def check_carrier(carriers, probe_id, answer) -> Outcome:
    """``answer``: the name of the person whose related fact carries the answer of indirect probe
    ``probe_id`` (``carriers``: :meth:`unlearnkit.world.World.carriers`)."""
    name = "carrier"
    if answer is ...:
        return _pending(name, "Set `carrier_name` to a person's name (a string).")
    if not isinstance(answer, str):
        raise ExerciseError(f"carrier_name should be a person's name (a string), got {answer!r}.")
    c = carriers.set_index("id")
    if probe_id not in c.index:
        raise ExerciseError(f"{probe_id!r} is not the id of an indirect probe; ids: {list(c.index)}.")
    row = c.loc[probe_id]
    got = " ".join(answer.split()).lower()
    if got == str(row.twin).lower():
        return _ok(f"Right: {row.twin}'s fact ({row.carrier_answer!r}) carries the answer {row.value!r}, which is also "
                   f"{row.person}'s forgotten {row.attribute}.")
    if got == str(row.person).lower():
        raise ExerciseError(f"{row.person} is the forgotten person: the probe asks about them, but their own facts are "
                            "the ones unlearned. The answer travels through someone else's fact: look at the twin.")
    if got in {str(t).lower() for t in carriers.twin}:
        raise ExerciseError(f"{answer} is a twin too, but of someone else; probe {probe_id} asks about {row.person}.")
    raise ExerciseError(f"{answer!r} is not in the carriers table; look at the row whose id is {probe_id}.")


# -- notebook 03: memorization ------------------------------------------------------------------------

def _memorization_accuracy(preds, target) -> float:
    """MA: the share of positions where the greedy (teacher-forced) prediction equals the target token."""
    return sum(int(p == t) for p, t in zip(preds, target)) / len(target)


def _extractable(recovered) -> list:
    """Ids of the sequences the extraction attack recovered (a ``recovered_table``)."""
    return sorted(int(i) for i in recovered.loc[recovered["recovered"], "id"])


_REFERENCE["memorization_accuracy"] = _memorization_accuracy
_COMPUTED["extractable"] = _extractable
__all__ += ["check_memorization_accuracy", "check_extractable"]


def check_memorization_accuracy(fn) -> Outcome:
    """``fn(preds, target) -> float``: ``preds[t]`` is the model's greedy guess for token ``t`` given the
    true tokens before it; return the share of positions guessed right (MA, in [0, 1])."""
    name = "memorization_accuracy"
    cases = [([5, 7, 1, 9], [5, 7, 2, 9], 0.75, "preds [5, 7, 1, 9] for target [5, 7, 2, 9]"),
             ([0, 0, 0, 0, 0], [0, 1, 0, 1, 0], 0.6, "preds [0, 0, 0, 0, 0] for target [0, 1, 0, 1, 0]"),
             ([4, 5, 6], [1, 2, 3], 0.0, "three wrong guesses"),
             ([8], [8], 1.0, "a one-token sequence guessed right")]
    for preds, target, want, what in cases:
        got = _call(name, fn, list(preds), list(target))
        if got is NotImplemented:
            return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: count the positions "
                                  "where preds[t] == target[t] and divide by the number of tokens.")
        _require_number(got, what)
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        right = sum(int(p == t) for p, t in zip(preds, target))
        if math.isclose(got, right, abs_tol=1e-9) and right != want:
            raise ExerciseError(f"For {what} you returned {got:g}, the *number* of right guesses; MA is a share: "
                                f"divide by the {len(target)} tokens.")
        if math.isclose(got, 1 - want, abs_tol=1e-9):
            raise ExerciseError(f"For {what} you returned {got:g}, the share of *wrong* guesses; MA counts the "
                                "right ones.")
        if len(target) > 1 and math.isclose(got, right / (len(target) - 1), abs_tol=1e-9):
            raise ExerciseError(f"For {what} you divided by T-1 = {len(target) - 1}; here every one of the "
                                f"{len(target)} tokens has a prediction, so divide by {len(target)}.")
        raise ExerciseError(f"For {what} MA is {want:g}, but your function returned {got:g}.")
    return _ok("memorization_accuracy matches the kit's MA (spec B12) on every case.")


def check_extractable(recovered, answer) -> Outcome:
    """``answer``: the ids of the forget sequences that the extraction attack (``recovered``, a
    :func:`unlearnkit.memorization.recovered_table` after GA) still recovers."""
    name = "extractable"
    if answer is ...:
        return _pending(name, "Set `extractable` to a list of sequence ids (look at the memorization before GA: "
                              "which records did the model see most often?).")
    try:
        got = sorted(int(i) for i in answer)
    except (TypeError, ValueError):
        raise ExerciseError(f"`extractable` should be a list of sequence ids, got {answer!r}") from None
    want = _extractable(recovered)
    if got == want:
        return _ok(f"Right: the attack recovers {len(want)} sequence(s) after GA: {want}.")
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    msg = []
    if missing:
        msg.append(f"the attack still recovers {missing}, which you left out")
    if extra:
        msg.append(f"{extra} are not recovered")
    raise ExerciseError("Not quite: " + "; ".join(msg) + ". Compare the recovered table with each record's "
                        "repetitions and its MA before GA.")


# -- notebook 05: unlearning by editing ------------------------------------------------------------

def _edit_change(dW, k):
    """How much an edit ``dW`` (d1 x d0) changes a layer's output on key ``k`` (d0,): ||dW k||."""
    import numpy as np

    return float(np.linalg.norm(np.asarray(dW, dtype=float) @ np.asarray(k, dtype=float)))


_REFERENCE["edit_change"] = _edit_change


def check_edit_change(fn) -> Outcome:
    """``fn(dW, k) -> float``: the norm of the change ``dW @ k`` of the edited layer's output on key
    ``k``. Checked on a toy AlphaEdit update: ~0 on preserved keys, not on the edited key."""
    import numpy as np

    name = "edit_change"
    rng = np.random.default_rng(0)
    B = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    P = B[:, 4:] @ B[:, 4:].T  # null space: 2 directions; preserved span: the other 4
    k1 = rng.normal(size=6)
    r = rng.normal(size=3)
    X = np.linalg.solve(P @ np.outer(k1, k1) + 0.1 * np.eye(6), P @ np.outer(k1, r))
    dW = X.T
    preserved = B[:, :4] @ rng.normal(size=4)
    got = _call(name, fn, dW.copy(), preserved.copy())
    if got is NotImplemented:
        return _pending(name, "Replace `raise NotImplementedError` with your code. Hint: the change of the output "
                              "is dW @ k; return its norm (np.linalg.norm).")
    _require_number(got, "a key in the preserved span")
    if got > 1e-6:
        want = _edit_change(dW, preserved)
        raise ExerciseError(f"For a key in the preserved span the change is {want:.2e} (the null-space property), "
                            f"but your function returned {got:.4g}. Compute np.linalg.norm(dW @ k).")
    got1 = _call(name, fn, dW.copy(), k1.copy())
    _require_number(got1, "the edited key")
    want1 = _edit_change(dW, k1)
    if not math.isclose(got1, want1, rel_tol=1e-6):
        raise ExerciseError(f"For the edited key the change is {want1:.4g}, but your function returned {got1:.4g}.")
    return _ok(f"Right: the preserved key's output moves by {got:.1e}, the edited key's by {got1:.3f}: the update "
               "only sees the part of a key in the null space of the preserved keys.")


def check_changed_answers(before: dict, after: dict, answer) -> Outcome:
    """``answer``: the set of question ids whose greedy answer differs between ``before`` and
    ``after`` (dicts id -> greedy answer, as the notebook prints them)."""
    name = "changed_answers"
    if answer is ...:
        return _pending(name, "Set `changed` to a set of question ids, e.g. {3, 7}.")
    try:
        got = {int(a) for a in answer}
    except (TypeError, ValueError):
        raise ExerciseError(f"`changed` should be a set of question ids (ints), not {answer!r}.") from None
    want = _changed_answers(before, after)
    unknown = got - set(int(i) for i in before)
    if unknown:
        raise ExerciseError(f"ids {sorted(unknown)} are not among the questions shown ({sorted(before)}).")
    if got == want:
        return _ok(f"Right: the edit changed {len(want)} of {len(before)} answers ({sorted(want)}).")
    missed, extra = sorted(want - got), sorted(got - want)
    raise ExerciseError("Not quite: " + "; ".join(
        x for x in (f"the answers of {missed} changed too" if missed else "",
                    f"the answers of {extra} did not change" if extra else "") if x) + ".")


# -- notebook 06: breaking an unlearned model ----------------------------------------------------------

def _relearn_attack(model, tok, rows):
    """The relearning attack: fine-tune a copy of the unlearned model on a few forget rows (10 AdamW
    steps at 3e-4; the kit's own `relearning` metric uses 1e-4, gentler)."""
    from unlearnkit.metrics import finetune_copy

    return finetune_copy(model, tok, rows["question"], rows["answer"], steps=10, lr=3e-4)


_REFERENCE["relearn_attack"] = _relearn_attack
__all__ += ["check_relearn_attack"]


def check_relearn_attack(unlearned, target, tok, rows, held_out, fn, recover: float = 0.5) -> Outcome:
    """``fn(model, tok, rows) -> model``: an attack on the unlearned model that fine-tunes a copy of
    it on ``rows`` (a few forget rows). It passes when, on the ``held_out`` forget rows (never shown
    to the attack), the answers' mean probability climbs back by at least ``recover`` (half) of what
    unlearning removed: ``(after - unlearned) >= recover * (target - unlearned)``."""
    from unlearnkit.io import model_digest
    from unlearnkit.scoring import score_pairs

    name = "relearn_attack"
    if not callable(fn):
        raise ExerciseError(f"'{name}' should be a function, but it is a {type(fn).__name__}")
    try:
        fn(None, None, None)
    except NotImplementedError:
        return _pending(name, "Replace `raise NotImplementedError` with your attack. Hint: uk.metrics.finetune_copy "
                              "fine-tunes a copy of a model on question/answer pairs; try a few steps, and more than "
                              "the kit's gentle learning rate.")
    except Exception:  # noqa: BLE001 - a real attack cannot run on None: called for real below
        pass
    before = model_digest(unlearned)
    attacked = fn(unlearned, tok, rows)
    if not hasattr(attacked, "parameters") or not callable(getattr(attacked, "forward", None)):
        raise ExerciseError(f"{name} should return the attacked model, but it returned {type(attacked).__name__}.")
    if model_digest(unlearned) != before:
        raise ExerciseError("Your attack changed the unlearned model itself. Work on a copy (finetune_copy makes one), "
                            "so the model under attack stays as unlearning left it.")
    if attacked is unlearned:
        raise ExerciseError("Your attack returned the unlearned model unchanged: fine-tune a copy on `rows`.")

    def prob(m):
        return float(score_pairs(m, tok, held_out["question"], held_out["answer"])["prob"].mean())

    p_t, p_u, p_a = prob(target), prob(unlearned), prob(attacked)
    removed = p_t - p_u
    if removed <= 0.05:
        raise ExerciseError(f"Unlearning removed little here (held-back answers {p_t:.3f} -> {p_u:.3f}): there is "
                            "nothing to bring back. Unlearn harder (more steps or a larger learning rate) first.")
    back = (p_a - p_u) / removed
    msg = (f"held-back answers' probability: target {p_t:.3f}, unlearned {p_u:.3f}, after your attack {p_a:.3f} "
           f"({back:.0%} of what unlearning removed came back)")
    if p_a <= p_u:
        raise ExerciseError(f"Your attack brought nothing back ({msg}). Fine-tune on `rows` with the answer-token NLL; "
                            "try more steps or a larger learning rate.")
    if back < recover:
        raise ExerciseError(f"Not broken yet: {msg}; aim for at least {recover:.0%}. Try more steps or a larger "
                            "learning rate (too large overshoots: watch the number).")
    return _ok(f"Broken: {msg}, from {len(rows)} rows the attack saw, on {len(held_out)} it never saw. The answers "
               "were suppressed, not erased.")


def _relearning_helps_more(attacks, model: str = "GA", versus: str = "retain") -> bool:
    """True if the relearning attack raises ``model``'s held-back answers' probability more than
    ``versus``'s (``attacks``: :func:`unlearnkit.viz.attack_table`)."""
    change = attacks[attacks.attack.str.startswith("relearning")].set_index("model")["change"]
    return bool(change[model] > change[versus])


_COMPUTED["relearning_prediction"] = _relearning_helps_more
__all__ += ["check_relearning_prediction"]


def check_relearning_prediction(attacks, prediction) -> Outcome:
    """``prediction``: True if the relearning attack raises GA's held-back forget answers' probability
    more than the retain model's (a model that never saw them), False if not; written down before
    the attacks run, checked against ``attacks`` (:func:`unlearnkit.viz.attack_table`) after."""
    name = "relearning_prediction"
    if prediction is ...:
        return _pending(name, "Set `prediction` to True or False before running the attacks.")
    if not isinstance(prediction, bool):
        raise ExerciseError(f"`prediction` should be True or False, not {prediction!r}.")
    rel = attacks[attacks.attack.str.startswith("relearning")].set_index("model")
    if not {"GA", "retain"} <= set(rel.index):
        raise ExerciseError(f"the attacks table needs the relearning rows of 'GA' and 'retain'; it has {list(rel.index)}")
    ga, ret = rel.loc["GA"], rel.loc["retain"]
    truth = _relearning_helps_more(attacks)
    said = (f"GA's held-back answers went from {ga.before:.3f} to {ga.after:.3f} ({ga.change:+.3f}), the retain "
            f"model's from {ret.before:.3f} to {ret.after:.3f} ({ret.change:+.3f})")
    if prediction == truth:
        why = ("what GA removed comes back from a few related rows: suppressed, not erased" if truth else
               "here GA's forgetting held up as well as never having known the facts")
        return _ok(f"Right: {said}; {why}.")
    if truth:
        raise ExerciseError(f"Not this time: {said}. Relearning restores much more in GA's model than in one that "
                            "never knew these facts: the knowledge was still there, only suppressed.")
    raise ExerciseError(f"Not this time: {said}. In this run relearning brought GA no more back than it taught "
                        "the retain model from scratch.")
