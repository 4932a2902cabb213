# Two commands set everything up on a fresh machine:
#   make run    create .venv if missing, install, run the nine notebooks (run_all.py)
#   make test   create .venv if missing, install, run the whole test suite
# Options:  make run PROFILE=smoke DATA=/path/to/ham10000 ARGS="--only 01,02 --protocol grouped"
#           EXTRAS=gpu,dev for the CUDA build of TensorFlow (default cpu,dev: tensorflow-cpu).
#           make test TEST_WORKERS=1 runs the tests in one process (default 2 pytest-xdist workers).
#           When no dataset is found, `make run` says what would be fetched from Harvard Dataverse and
#           how large (2.8 GB), then asks before downloading when a terminal is attached; without a
#           terminal it downloads nothing and stops. DOWNLOAD=yes downloads without asking;
#           DOWNLOAD=no never downloads, only says where to put the dataset.

PYTHON ?= python3.11
VENV ?= .venv
EXTRAS ?= cpu,dev
PROFILE ?= full
DATA ?= $(or $(SKINLIB_DATA),data/ham10000)
ARGS ?=
DOWNLOAD ?=
TEST_WORKERS ?= 2
comma := ,
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# DOWNLOAD: yes -> --download-yes, no -> --no-download, empty -> neither (run_all.py asks on a terminal)
DOWNLOAD_FLAG := $(if $(filter yes,$(DOWNLOAD)),--download-yes,$(if $(filter no,$(DOWNLOAD)),--no-download,))

.PHONY: run test install clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(or $(shell command -v $(PYTHON)),python3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(if $(filter-out yes no,$(DOWNLOAD)),$(error DOWNLOAD must be yes, no or left out (then run_all.py asks when a terminal is attached), not '$(DOWNLOAD)'))
	$(PY) run_all.py --profile $(PROFILE) --data $(DATA) $(DOWNLOAD_FLAG) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load $(ARGS)

clean-outputs:
	rm -rf outputs
