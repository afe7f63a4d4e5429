# unlearnkit: two commands on a fresh machine (Python 3.11):
#   make demo   set up .venv, build or load the miniature world and models, run the tour notebook headless
#   make test   set up .venv, run the whole test suite (notebooks included)
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
RUNS   ?= runs
export TOKENIZERS_PARALLELISM = false
export TRANSFORMERS_VERBOSITY = error
export HF_HUB_DISABLE_PROGRESS_BARS = 1
export HF_HUB_OFFLINE = 1
export PYTHONHASHSEED = 0
# (no OMP_WAIT_POLICY=PASSIVE: measured, it makes the 2-thread tiny-model builds 1.6x slower on a
# free machine; tests run one torch thread per process, so they never spin-wait against each other)
export UNLEARNKIT_CACHE ?= $(CURDIR)/.cache

.PHONY: setup demo test lab bench lint notebooks docs lock clean browser-deps course book binder-url

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch first (pinned): an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q "torch==2.13.0"
	# every other version from the lock: two installs resolve to the same packages
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -c "import matplotlib.pyplot"  # warm the font cache so no stderr line lands in a notebook
	touch $(STAMP)

setup: $(STAMP)

# --log-output: every cell's output is echoed to the terminal as it comes (the model builds print a
# line per quarter of their steps), so a first run, which builds the models, does not sit silent
demo: $(STAMP)
	mkdir -p $(RUNS)
	$(PY) -m papermill notebooks/00_tour.ipynb $(RUNS)/00_tour.ipynb --cwd notebooks -p figures_dir ../$(RUNS)/figures \
	  --log-output
	@echo "executed notebook: $(RUNS)/00_tour.ipynb   figures: $(RUNS)/figures/"

browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will skip"

# one torch thread per process: the tiny model gains nothing from more, and test processes
# (pytest, notebook kernels, JupyterLab) must not spin-wait against each other on 2 cores
test: $(STAMP) browser-deps lint
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check unlearnkit tests benchmarks notebooks

# notebooks are edited as jupytext text files (notebooks/NN_name.py, py:percent); this writes the
# paired .ipynb (cells from the .py, outputs kept); tests/test_house.py fails when a pair disagrees
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --quiet --to ipynb --update notebooks/[0-9]*.py

# refresh the lock from a fresh resolution of pyproject's ranges (then run make test and commit it)
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv && .lockvenv/bin/pip install -q --upgrade pip
	.lockvenv/bin/pip install -q "torch==2.13.0" && .lockvenv/bin/pip install -q -e ".[dev]"
	{ head -2 constraints.txt; .lockvenv/bin/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lockvenv

# the course from one source (notebooks/): a student version (stubs and checks, no solutions) and a
# solution version (each exercise filled from unlearnkit.exercises.solution) of every notebook
course: $(STAMP)
	$(PY) -m unlearnkit.course build --student build/course/student --solution build/course/solution

# the course site, readable offline: the solution version executed with the quick parameters
# (papermill, into build/executed/), rendered with nbconvert into build/book/ (open build/book/index.html)
book: $(STAMP)
	$(PY) -m unlearnkit.course build --solution build/course/solution
	OMP_NUM_THREADS=1 $(PY) -m unlearnkit.course execute build/course/solution build/executed --cwd notebooks
	$(PY) -m unlearnkit.course book build/executed build/book

# the mybinder.org launch link of this clone (read from its git remote 'origin')
binder-url: $(STAMP)
	@$(PY) -m unlearnkit.course binder

# the reference pages (objectives, metrics, loop parameters), generated from the registries
docs: $(STAMP)
	$(PY) -m unlearnkit.docs

clean:
	rm -rf $(RUNS) build .pytest_cache
