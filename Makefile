# drope — two commands on a fresh machine: `make demo` and `make test`.
PY ?= python
PIP ?= $(PY) -m pip
# torch is pinned here on purpose: an unpinned torch pulls a multi-GB CUDA build.
# GPU users: install a CUDA build of the same version first, e.g.
#   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo_out
PYTEST_ARGS ?= -n 2

.PHONY: install test demo bench clean

install:
	$(PIP) install -q $(TORCH_SPEC)
	# official WOMD protos only; its declared deps pin TensorFlow 2.13 / numpy 1.23, never install them
	$(PIP) install -q --no-deps waymo-open-dataset-tf-2-12-0==1.6.7
	$(PIP) install -q -e ".[dev]"

test: install
	$(PY) -m pytest $(PYTEST_ARGS) tests

demo: install
	$(PY) -m drope.demo --out $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info
