# Development entry points.  `make test` works on a fresh machine with only python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# constraints.txt pins what this project's machines need (the CPU torch wheel on disk, the
# reference transformers); library users are not bound by it.
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: install test test-slow lint format demo gpu-wheels clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip setuptools wheel
	$(PIP_INSTALL) -e ".[torch,tf,onnx,export,fast,data,serve,test]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) scripts/demo.py

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Wheels a GPU machine of this workplace lacks for scripts/gpu_check.sh (the reference
# transformers 4.57.6 and the versions it pins; its image has newer ones), for Python 3.12.
gpu-wheels:
	$(PYTHON) -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
		transformers==4.57.6 huggingface_hub==0.36.2 tokenizers==0.22.2

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
