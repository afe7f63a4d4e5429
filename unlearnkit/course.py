"""The course, built from one source: student and solution notebooks, and the executed course site.

The notebooks in ``notebooks/`` are the one source. Each exercise is two code cells:

* the **exercise cell**, marked with the cell metadata ``exercise="<name>"`` (in the jupytext text
  file: ``# %% exercise="rest_mass"``): the stub the student fills in (a function raising
  ``NotImplementedError``, or ``answer = ...``);
* a later **check cell** calling ``ex.check_<name>(...)``, plainly, on the student's answer (the
  last positional argument; the arguments before it are the run's results the check reads).

``build`` writes two versions of every notebook:

* **student**: the source as it is (stubs and checks, outputs cleared): no solutions, no switch to
  reveal them;
* **solution**: each exercise cell filled from :func:`unlearnkit.exercises.solution` (the reference
  the checks use as their oracle, so no solution is written twice). A function exercise gets the
  reference's source under the stub's name; a value exercise its literal; an exercise whose answer
  depends on the run gets the function computing it, and its check cell computes the answer from
  the run just before checking it (so a *prediction* is filled in with what was measured).

``book`` renders executed notebooks into a static site (nbconvert HTML, one page per notebook, an
index in course order); nothing is downloaded, so it builds offline and reads offline.

Command line::

    python -m unlearnkit.course build --student build/student --solution build/solution
    python -m unlearnkit.course execute build/solution build/executed      # papermill, quick=True
    python -m unlearnkit.course book build/executed build/book
"""

from __future__ import annotations

import argparse
import ast
import copy
import html
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

# imported with the module: nbconvert's bleach import warns (html5lib's sanitizer), not a call of ours
from nbconvert import HTMLExporter

from . import claims
from . import exercises as ex
from .io import atomic_dir

__all__ = ["ExerciseCells", "exercise_cells", "solution_notebook", "student_notebook", "build", "execute", "book",
           "page_errors", "remote_fetches", "binder_url", "CourseError"]

#: the cell metadata key that marks an exercise cell
MARK = "exercise"


class CourseError(ValueError):
    """A notebook's exercises are not marked the way the build needs; the message says where."""


@dataclass
class ExerciseCells:
    name: str
    cell: int                   #: index of the exercise cell
    check: int                  #: index of its check cell
    answer: str                 #: the name the check reads the student's answer from
    run_args: list[str] = field(default_factory=list)   #: source of the check's arguments before the answer
    keywords: list[str] = field(default_factory=list)   #: source of its keyword arguments ("budget=budget")
    check_line: int = 0         #: first line (0-based) of the check call's statement in the check cell


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _check_calls(source: str):
    """(exercise name, ast.Call, statement) of every ``ex.check_<name>(...)`` call in a cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out = []
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr.startswith("check_") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "ex"):
                out.append((node.func.attr[len("check_"):], node, stmt))
    return out


def exercise_cells(nb, where: str = "notebook") -> list[ExerciseCells]:
    """The exercises of a notebook (a dict in nbformat 4), in order; :class:`CourseError` if an
    exercise cell has no check cell after it, a check cell has no marked exercise cell, or a name
    is not in :data:`unlearnkit.exercises.EXERCISES`."""
    cells = nb["cells"]
    found, checked = [], set()
    for i, c in enumerate(cells):
        name = c.get("metadata", {}).get(MARK)
        if name is None:
            continue
        if c["cell_type"] != "code":
            raise CourseError(f"{where}: cell {i} is marked exercise={name!r} but is a {c['cell_type']} cell")
        if name not in ex.EXERCISES:
            raise CourseError(f"{where}: cell {i} is marked exercise={name!r}, which is not an exercise; "
                              f"valid: {sorted(ex.EXERCISES)}")
        for j in range(i + 1, len(cells)):
            calls = [(n, call, st) for n, call, st in _check_calls(_src(cells[j])) if n == name]
            if cells[j]["cell_type"] == "code" and calls:
                break
        else:
            raise CourseError(f"{where}: exercise {name!r} (cell {i}) has no check cell after it calling "
                              f"ex.check_{name}(...)")
        _, call, stmt = calls[0]
        if not call.args or not isinstance(call.args[-1], ast.Name):
            raise CourseError(f"{where}: the check of {name!r} (cell {j}) must pass the answer as its last "
                              f"positional argument, a plain name (ex.check_{name}(..., answer))")
        text = _src(cells[j])
        found.append(ExerciseCells(
            name, i, j, call.args[-1].id, [ast.get_source_segment(text, a) for a in call.args[:-1]],
            [ast.get_source_segment(text, k) for k in call.keywords], stmt.lineno - 1))
        checked.add(j)
    for j, c in enumerate(cells):
        if c["cell_type"] == "code" and j not in checked:
            for name, _, _ in _check_calls(_src(c)):
                raise CourseError(f"{where}: cell {j} calls ex.check_{name}(...) but no cell before it is marked "
                                  f"exercise={name!r}")
    return found


def _fresh(nb):
    out = copy.deepcopy(nb)
    for c in out["cells"]:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    return out


def _set_src(cell, text: str) -> None:
    cell["source"] = text


def _solution_cell(e: ExerciseCells, stub: str, where: str) -> str:
    fn = ex.solution_function(e.name)
    src = ex.solution(e.name)
    head = f"# Solution ({ex.EXERCISES[e.name].task}), from unlearnkit.exercises.solution({e.name!r})\n"
    if fn is None:  # a value answer
        return head + f"{e.answer} = {src}"
    if e.name in ex._COMPUTED:
        return head + src.rstrip() + f"\n\n\n# the answer, {e.answer}, is computed from this run in the check cell below"
    defs = [n for n in ast.parse(stub).body if isinstance(n, ast.FunctionDef)]
    if len(defs) != 1 or defs[0].name != e.answer:
        raise CourseError(f"{where}: the exercise cell of {e.name!r} must define one function, {e.answer}(...)")
    ref = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == fn)
    want, got = [a.arg for a in ref.args.args], [a.arg for a in defs[0].args.args]
    if want != got:
        raise CourseError(f"{where}: the stub {e.answer}({', '.join(got)}) and the reference {fn}({', '.join(want)}) "
                          f"of {e.name!r} take different arguments")
    return head + re.sub(rf"^def {re.escape(fn)}\(", f"def {e.answer}(", src, count=1, flags=re.M).rstrip()


def solution_notebook(nb, where: str = "notebook"):
    """The solution version: outputs cleared, each exercise cell filled with its solution."""
    out = _fresh(nb)
    for e in exercise_cells(out, where):
        cell = out["cells"][e.cell]
        _set_src(cell, _solution_cell(e, _src(cell), where))
        cell["metadata"]["solution"] = True
        if e.name in ex._COMPUTED:
            check = out["cells"][e.check]
            lines = _src(check).split("\n")
            args = ", ".join(e.run_args + e.keywords)
            lines.insert(e.check_line, f"{e.answer} = {ex.solution_function(e.name)}({args})  # the solution")
            _set_src(check, "\n".join(lines))
    out["metadata"]["unlearnkit_course"] = "solution"
    return out


def student_notebook(nb, where: str = "notebook"):
    """The student version: the source with outputs cleared (stubs and checks, no solutions)."""
    exercise_cells(nb, where)  # validates the marks
    out = _fresh(nb)
    out["metadata"]["unlearnkit_course"] = "student"
    return out


def _notebooks(source: Path, names=None) -> list[Path]:
    paths = sorted(Path(source).glob("[0-9][0-9]_*.ipynb"))
    if names:
        wanted = set(names)
        paths = [p for p in paths if p.stem in wanted or p.stem[:2] in wanted]
        missing = wanted - {p.stem for p in paths} - {p.stem[:2] for p in paths}
        if missing:
            raise CourseError(f"notebooks={sorted(missing)} not found in {source}")
    if not paths:
        raise CourseError(f"no notebooks (NN_name.ipynb) in {source}")
    return paths


def build(source="notebooks", student=None, solution=None, notebooks=None, overwrite: bool = True) -> dict:
    """Write the student and/or solution version of every notebook of ``source`` (or of
    ``notebooks``: stems or numbers) into the folders given (each written atomically). Returns
    ``{"notebooks": [...], "exercises": {notebook: [names]}}``."""
    if student is None and solution is None:
        raise CourseError("build: give student=<folder>, solution=<folder>, or both")
    paths = _notebooks(Path(source), notebooks)
    report = {"notebooks": [p.name for p in paths], "exercises": {}}
    for folder, make in ((student, student_notebook), (solution, solution_notebook)):
        if folder is None:
            continue
        with atomic_dir(folder, overwrite=overwrite) as tmp:
            for p in paths:
                nb = json.loads(p.read_text(encoding="utf-8"))
                (Path(tmp) / p.name).write_text(json.dumps(make(nb, p.name), indent=1, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
                report["exercises"][p.name] = [e.name for e in exercise_cells(nb, p.name)]
    return report


def execute(source, out, parameters=None, cwd=None, notebooks=None) -> dict:
    """Run every notebook of ``source`` with papermill into ``out`` (each written when it has run
    through); ``parameters`` default to ``quick=True`` and figures saved in ``out/figures``; ``cwd``
    is the kernels' working folder (default: ``source``). Returns seconds per notebook."""
    import papermill as pm

    out = Path(out)
    params = {"quick": True, "figures_dir": str((out / "figures").resolve())} if parameters is None else dict(parameters)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    for p in _notebooks(Path(source), notebooks):
        t0 = time.perf_counter()
        tmp = out / f".{p.stem}.running.ipynb"
        pm.execute_notebook(str(p), str(tmp), parameters=params, cwd=str(cwd or source), progress_bar=False,
                            kernel_name="python3")
        tmp.replace(out / p.name)
        times[p.name] = time.perf_counter() - t0
        print(f"{p.name}: {times[p.name]:.0f} s", flush=True)
    return times


# -- Binder ----------------------------------------------------------------------------------------

#: the launch link's pattern: <owner>/<repo> is the GitHub repository, <ref> a branch, tag or commit
BINDER_PATTERN = "https://mybinder.org/v2/gh/{owner}/{repo}/{ref}?urlpath=lab/tree/notebooks/{notebook}"


def binder_url(remote: str | None = None, ref: str = "HEAD", notebook: str = "00_tour.ipynb",
               repo_dir=".") -> str | None:
    """The mybinder.org launch link of the repository whose GitHub ``remote`` URL is given (https or
    ssh form), or read from ``git remote get-url origin`` in ``repo_dir``; None when there is no
    GitHub remote (the link needs one)."""
    if remote is None:
        import subprocess

        try:
            remote = subprocess.run(["git", "-C", str(repo_dir), "remote", "get-url", "origin"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    m = re.match(r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([\w.-]+)/([\w.-]+?)(?:\.git)?/?$",
                 remote or "")
    if not m:
        return None
    return BINDER_PATTERN.format(owner=m.group(1), repo=m.group(2), ref=ref, notebook=notebook)


# -- the course site ---------------------------------------------------------------------------------

_STDERR = "application/vnd.jupyter.stderr"


def page_errors(page: str) -> list[str]:
    """Error (or stderr) outputs in an nbconvert HTML page: each one's first line."""
    out = []
    for m in re.finditer(rf'data-mime-type="{re.escape(_STDERR)}"[^>]*>(.{{0,400}})', page, flags=re.S):
        text = re.sub(r"<[^>]+>", "", m.group(1))
        out.append(html.unescape(text).strip().split("\n")[0])
    return out


def _title_and_intro(nb) -> tuple[str, str]:
    for c in nb["cells"]:
        if c["cell_type"] != "markdown":
            continue
        lines = _src(c).strip().split("\n")
        if lines and lines[0].startswith("# "):
            title = lines[0][2:].strip()
            para = []
            for line in lines[1:]:
                if not line.strip():
                    if para:
                        break
                    continue
                if line.lstrip().startswith(("#", ">", "|", "!")):
                    break
                para.append(line.strip())
            return title, " ".join(para)
    raise CourseError("a notebook must start with a markdown cell '# Title' for the course site")


def _md_inline(text: str) -> str:
    """Markdown inline code, bold and links as HTML (escaped): enough for an index blurb."""
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"\*([^*]+)\*", r"<i>\1</i>", t)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", t)


_STYLE = """body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
li{margin:.8rem 0}a{font-weight:600}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}
.kind{color:#555}"""


def book(executed, out, title: str = "unlearnkit: the course") -> dict:
    """Render the executed notebooks of ``executed`` into a static site in ``out`` (written
    atomically): one HTML page per notebook (nbconvert's lab template, figures and widget images
    embedded, no script or stylesheet fetched from the network) and ``index.html`` in course order
    with each notebook's title and first lines, and the exercise table. Returns
    ``{"pages": [...], "errors": {page: [...]}}``; raises :class:`CourseError` if a page holds an
    error output."""
    paths = _notebooks(Path(executed))
    exporter = HTMLExporter(template_name="lab", mathjax_url="", require_js_url="", widget_renderer_url="")
    entries, errors, pages = [], {}, []
    with atomic_dir(out, overwrite=True) as tmp:
        for p in paths:
            nb = _static_widgets(nbformat.read(str(p), as_version=4))
            nb_title, intro = _title_and_intro(nb)
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": nb_title}})
            body = _offline(body)
            name = p.stem + ".html"
            (Path(tmp) / name).write_text(body, encoding="utf-8")
            pages.append(name)
            errs = page_errors(body)
            if errs:
                errors[name] = errs
            entries.append(f'<li><a href="{name}">{html.escape(nb_title)}</a><br>{_md_inline(intro)}</li>')
        rows = "".join(f"<tr><td>{e.notebook}</td><td><code>{n}</code></td><td class=kind>{e.kind}</td>"
                       f"<td>{html.escape(e.task)}</td></tr>" for n, e in ex.EXERCISES.items())
        verdicts = claims.table(executed)  # what the notebooks recorded when they ran (claims/<id>.json)
        claim_rows = "".join(f"<tr><td>{r.notebook}</td><td>{html.escape(r.paper)}</td><td>{html.escape(r.claim)}</td>"
                             f"<td><b>{html.escape(r.verdict)}</b> {html.escape(r.setting)}</td>"
                             f"<td>{html.escape(r.numbers)}</td></tr>" for r in verdicts.itertuples(index=False))
        (Path(tmp) / "claims.md").write_text(claims.page(executed), encoding="utf-8")
        launch = binder_url(repo_dir=Path(executed).resolve().parent)
        launch = f'<p><a href="{html.escape(launch)}">Launch the notebooks on Binder</a></p>' if launch else ""
        index = (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                 f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{launch}"
                 "<p>Every notebook of the course, executed with its quick parameters, in reading order. Read them "
                 "here without running anything; run them in <code>notebooks/</code> (or on Binder) to change the "
                 "parameters and do the exercises. The pages show the <b>solution version</b>: each exercise filled "
                 "in and checked.</p>"
                 f"<ol>{''.join(entries)}</ol><h2>Exercises</h2><table><tr><th>notebook</th><th>exercise</th>"
                 f"<th>kind</th><th>task</th></tr>{rows}</table>"
                 "<h2>What the miniature reproduces</h2><p>Each seed paper's headline claims and the verdict this "
                 "run's numbers give (<code>unlearnkit.claims</code>; also in <code>claims.md</code>).</p>"
                 "<table><tr><th>notebook</th><th>paper</th><th>claim</th><th>verdict</th><th>numbers</th></tr>"
                 f"{claim_rows}</table></body></html>\n")
        (Path(tmp) / "index.html").write_text(index, encoding="utf-8")
    if errors:
        raise CourseError(f"pages with an error output: {errors}")
    return {"pages": ["index.html", *pages], "errors": errors}


_FETCH = re.compile(r"""(?:src|href)\s*=\s*["']https?://|import\s*\(?\s*["']https?://|["']https?://[^"']*\.m?js["']""")


def remote_fetches(page: str) -> list[str]:
    """What a page would fetch from the network when opened: script/stylesheet addresses, imports."""
    return [m.group(0) for m in _FETCH.finditer(page)]


def _offline(page: str) -> str:
    """Drop the scripts and stylesheets the template would fetch from the network (MathJax, mermaid,
    the widget manager): the site must read offline; figures and widget images are embedded."""
    page = re.sub(r"<script\b[^>]*>(?:(?!</script>).)*?</script>",
                  lambda m: "" if _FETCH.search(m.group(0)) else m.group(0), page, flags=re.S)
    return re.sub(r"<link\b[^>]*>", lambda m: "" if _FETCH.search(m.group(0)) else m.group(0), page)


def _static_widgets(nb):
    """Show each widget by its static image: an output carrying both a widget view and a PNG keeps
    the PNG only (the live view needs a kernel, or a widget manager fetched from the network)."""
    for c in nb.cells:
        for o in c.get("outputs", []):
            data = o.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and "image/png" in data:
                del data["application/vnd.jupyter.widget-view+json"]
    nb.metadata.pop("widgets", None)
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unlearnkit.course", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the student and solution versions of the notebooks")
    b.add_argument("--source", default="notebooks")
    b.add_argument("--student")
    b.add_argument("--solution")
    b.add_argument("--notebooks", nargs="*", help="stems or numbers (default: all)")
    e = sub.add_parser("execute", help="run notebooks with papermill (quick=True) into a folder")
    e.add_argument("source")
    e.add_argument("out")
    e.add_argument("--cwd", help="the kernels' working folder (default: source)")
    e.add_argument("--full", action="store_true", help="the notebooks' own parameters instead of quick=True")
    e.add_argument("--notebooks", nargs="*", help="stems or numbers (default: all)")
    k = sub.add_parser("book", help="render executed notebooks into a static site")
    k.add_argument("executed")
    k.add_argument("out")
    sub.add_parser("binder", help="print the mybinder.org launch link of this repository (from its git remote)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            r = build(a.source, a.student, a.solution, a.notebooks)
            n = sum(len(v) for v in r["exercises"].values())
            print(f"{len(r['notebooks'])} notebooks, {n} exercises: " + ", ".join(
                x for x in (f"student -> {a.student}" if a.student else "",
                            f"solution -> {a.solution}" if a.solution else "") if x))
        elif a.cmd == "execute":
            t = execute(a.source, a.out, {} if a.full else None, cwd=a.cwd, notebooks=a.notebooks)
            print(f"total notebook time: {sum(t.values()):.0f} s")
        elif a.cmd == "binder":
            url = binder_url()
            if url is None:
                print("no GitHub remote named origin; the link is " + BINDER_PATTERN.format(
                    owner="<owner>", repo="<repo>", ref="HEAD", notebook="00_tour.ipynb"), file=sys.stderr)
                return 1
            print(url)
        else:
            r = book(a.executed, a.out)
            print(f"{len(r['pages'])} pages -> {Path(a.out) / 'index.html'}")
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
