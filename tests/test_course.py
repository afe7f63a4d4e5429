"""The course's one-source build: student and solution versions of every notebook, and what each
must do when run.

How the two versions are verified without executing the course twice more (each notebook takes
1-4 min on 2 cores):

* the **solution** version is the one tests/test_notebooks.py executes (papermill, then nbval):
  that run asserts every check cell printed ✓, so it is the solution test, at no extra cost;
* the **student** version differs from it only in the exercise cells and the lines the solution
  build inserts before a check (test_versions_differ_only_in_the_exercises, below, asserts that,
  and that no other cell reads an exercise's answer). What is left to run is the exercise cells and
  their check cells: test_student_checks_say_not_done_yet executes exactly those, every notebook's,
  in one kernel (a few seconds), with the run's results the checks receive replaced by objects that
  fail if touched (a check must say "not done yet" before it reads the run).
"""

import ast
import inspect
import json
from collections import Counter
from pathlib import Path

import pytest

from unlearnkit import course
from unlearnkit import exercises as ex

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("course")
    report = course.build(NB_DIR, student=d / "student", solution=d / "solution")
    return d, report


def _load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_every_exercise_is_in_its_notebook_once_and_the_kinds_are_covered(built, capsys):
    _, report = built
    where = {name: nb for nb, names in report["exercises"].items() for name in names}
    names = [n for names in report["exercises"].values() for n in names]
    assert len(names) == len(set(names)), "an exercise appears twice"
    assert set(names) == set(ex.EXERCISES), set(names) ^ set(ex.EXERCISES)
    for name, e in ex.EXERCISES.items():
        assert where[name].startswith(e.notebook + "_"), f"{name} is in {where[name]}, EXERCISES says {e.notebook}"
        assert e.kind in ex.KINDS
    kinds = Counter(e.kind for e in ex.EXERCISES.values())
    assert len(names) >= 14
    assert all(kinds[k] >= 1 for k in ("predict", "implement", "choose", "break")), kinds
    with capsys.disabled():
        print(f"\ncourse: {len(names)} exercises in {len(report['notebooks'])} notebooks; by kind: "
              + ", ".join(f"{k} {kinds[k]}" for k in ex.KINDS))


def test_versions_differ_only_in_the_exercises(built):
    d, report = built
    for name in report["notebooks"]:
        src, stu, sol = _load(NB_DIR / name), _load(d / "student" / name), _load(d / "solution" / name)
        assert [_src(c) for c in stu["cells"]] == [_src(c) for c in src["cells"]], "student = the source"
        assert all(not c.get("outputs") for c in stu["cells"] + sol["cells"] if c["cell_type"] == "code")
        text = "\n".join(_src(c) for c in stu["cells"])
        assert "show_solutions" not in text and "ex.reference(" not in text and "ex.solution(" not in text
        exs = course.exercise_cells(stu, name)
        answers = {e.answer for e in exs}
        touched = {e.cell for e in exs} | {e.check for e in exs}
        for i, (a, b) in enumerate(zip(stu["cells"], sol["cells"])):
            if i not in touched:
                assert _src(a) == _src(b), f"{name} cell {i} differs outside the exercises"
                if a["cell_type"] == "code":  # the student version would then fail there: no other cell reads it
                    try:
                        loads = {n.id for n in ast.walk(ast.parse(_src(a))) if isinstance(n, ast.Name)}
                    except SyntaxError:  # IPython magics
                        continue
                    assert not loads & answers, f"{name} cell {i} uses {loads & answers}, an exercise's answer"
        for e in exs:
            body = _src(sol["cells"][e.cell])
            assert _src(stu["cells"][e.cell]) != body
            fn = ex.solution_function(e.name)
            lines = [x for x in ex.solution(e.name).split("\n") if not x.startswith(f"def {fn}(")]
            assert all(x in body for x in lines), f"{name}: the solution cell of {e.name!r} is not its solution"
            secret = [x.strip() for x in lines if len(x.strip()) > 25 and not x.lstrip().startswith(
                ("def ", '"""', "import ", "from ", "#"))]
            assert not any(x in text for x in secret), \
                f"{name}: the student version shows a line of the solution of {e.name!r}"
            check_a, check_b = _src(stu["cells"][e.check]).split("\n"), _src(sol["cells"][e.check]).split("\n")
            extra = [x for x in check_b if x not in check_a]
            assert len(check_b) - len(check_a) == len(extra) <= 1 and all(x.startswith(e.answer + " = ") for x in extra)


class Untouched:
    """Stands for a run's result in the isolated student run: indexing it or reading an attribute
    gives another stand-in (a check's arguments may be ``rec["GA"]``), using it in any other way
    fails: a check must say "not done yet" before it reads the run."""

    def __init__(self, name):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr):
        return Untouched(f"{self._name}.{attr}")

    def __getitem__(self, key):
        return Untouched(f"{self._name}[{key!r}]")

    def _used(self, *args, **kw):
        raise AssertionError(f"the check used {self._name} before saying the exercise is not done yet")

    __call__ = __iter__ = __len__ = __bool__ = __eq__ = __ne__ = __lt__ = __gt__ = __le__ = __ge__ = _used
    __hash__ = object.__hash__


def test_student_checks_say_not_done_yet(built):
    """Every exercise cell and check cell of the student version, run in one kernel in course
    order: each check prints "not done yet", none passes, none raises."""
    import nbformat
    from nbclient import NotebookClient

    d, report = built
    cells, expect = [nbformat.v4.new_code_cell("from unlearnkit import exercises as ex\n\n\n"
                                               + inspect.getsource(Untouched))], []
    for name in report["notebooks"]:
        nb = _load(d / "student" / name)
        for e in course.exercise_cells(nb, name):
            run_names = sorted({n.id for a in e.run_args + [k.split("=", 1)[-1] for k in e.keywords]
                                for n in ast.walk(ast.parse(a)) if isinstance(n, ast.Name)})
            stand_ins = "".join(f"{n} = Untouched({n!r})\n" for n in run_names)
            cells += [nbformat.v4.new_code_cell(stand_ins + _src(nb["cells"][e.cell])),
                      nbformat.v4.new_code_cell(_src(nb["cells"][e.check]))]
            expect.append((name, e.name, len(cells) - 1))
    nb = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NB_DIR)}}).execute()
    for name, exercise, i in expect:
        outs = nb.cells[i].outputs
        text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
        assert not [o for o in outs if o.output_type == "error"], (name, exercise, outs)
        assert "not done yet" in text and "✓" not in text, (name, exercise, text)
    assert len(expect) == len(ex.EXERCISES)


def test_build_says_what_is_wrong(tmp_path):
    def nb(*cells):
        return {"cells": [{"cell_type": "code", "metadata": m, "source": s, "outputs": [], "execution_count": None}
                          for s, m in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

    with pytest.raises(course.CourseError, match="no check cell"):
        course.exercise_cells(nb(("x = ...", {"exercise": "crossover"})))
    with pytest.raises(course.CourseError, match="not an exercise; valid"):
        course.exercise_cells(nb(("x = ...", {"exercise": "nope"})))
    with pytest.raises(course.CourseError, match="no cell before it is marked"):
        course.exercise_cells(nb(("ex.check_min_k(min_k)", {})))
    with pytest.raises(course.CourseError, match="last positional argument"):
        course.exercise_cells(nb(("x = ...", {"exercise": "crossover"}), ("ex.check_crossover(ga, 3)", {})))
    with pytest.raises(course.CourseError, match="different arguments"):
        course.solution_notebook(nb(("def min_k(lp):\n    raise NotImplementedError", {"exercise": "min_k"}),
                                    ("ex.check_min_k(min_k)", {})))
    with pytest.raises(course.CourseError, match="give student="):
        course.build(NB_DIR)
    with pytest.raises(course.CourseError, match="not found"):
        course.build(NB_DIR, student=tmp_path / "s", notebooks=["99"])
    assert not (tmp_path / "s").exists()


def test_readme_lists_every_exercise_with_its_kind():
    readme = (NB_DIR.parent / "README.md").read_text(encoding="utf-8")
    for name, e in ex.EXERCISES.items():
        assert f"| {e.notebook} | `{name}` | {e.kind} | {e.task} |" in readme, f"README: the row of {name!r}"
    assert f"{len(ex.EXERCISES)} exercises (" in readme
