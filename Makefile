# The two commands a fresh clone needs: `make study` (the main job) and `make test`.
# Both create ./.venv on first use with the CPU build of torch and the pinned dependencies.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: study test test-distributed docs install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The tiny study, reduced: 4 conditions x 2 seeds on a CPU (the full grid: drop --seeds).
study: $(STAMP)
	$(VENV)/bin/zpd-curriculum study run --preset tiny --seeds 0 1 --output-dir runs/study-tiny

test: $(STAMP)
	$(PY) -m pytest

# Two-process runs under torchrun (CPU, gloo): about 3 minutes.
test-distributed: $(STAMP)
	$(PY) -m pytest -m distributed -p no:cacheprovider

# The documentation site, built strictly (warnings are errors) into ./site.
docs: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
