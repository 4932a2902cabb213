# Two commands set everything up on a fresh machine:
#   make run    create .venv if missing, install, run the nine notebooks (run_all.py)
#   make test   create .venv if missing, install, run the whole test suite
# Options:  make run PROFILE=smoke DATA=/path/to/ham10000 ARGS="--only 01,02 --protocol grouped"
#           EXTRAS=gpu,dev for the CUDA build of TensorFlow (default cpu,dev: tensorflow-cpu).
#           DOWNLOAD=0: when no dataset is found, only say where to put it (default: say what will be
#           fetched from Harvard Dataverse and how large, then download it).

PYTHON ?= python3.11
VENV ?= .venv
EXTRAS ?= cpu,dev
PROFILE ?= full
DATA ?= $(or $(SKINLIB_DATA),data/ham10000)
ARGS ?=
DOWNLOAD ?= 1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,

.PHONY: run test install clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(or $(shell command -v $(PYTHON)),python3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(PY) run_all.py --profile $(PROFILE) --data $(DATA) $(if $(filter 0,$(DOWNLOAD)),--no-download,--download-yes) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

clean-outputs:
	rm -rf outputs
