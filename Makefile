# tf-rgbd: `make demo` (the main job) and `make test` (the suite). Each sets itself up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Re-install when setup.py changes.
STAMP := $(VENV)/.installed-$(shell cksum setup.py | cut -d' ' -f1)
# `make demo QUICK=1`: the same stages at small sizes (--quick), in runs/demo_quick.
DEMO_DIR ?= $(if $(QUICK),runs/demo_quick,runs/demo)
PYTEST_WORKERS ?= 2

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,beam]'
	@# mediapipe pulls opencv-contrib-python beside opencv-python-headless; both own cv2/ and
	@# the contrib build links libGL. Keep exactly the pinned headless build (PITFALLS.md #6).
	$(PY) -m pip uninstall --quiet --yes opencv-contrib-python opencv-python 2>/dev/null || true
	$(PY) -m pip install --quiet --force-reinstall --no-deps opencv-python-headless==4.11.0.86
	$(PY) -c "import cv2, tensorflow, keras, mediapipe; print('venv ready: TF', tensorflow.__version__, 'Keras', keras.__version__, 'OpenCV', cv2.__version__)"
	@rm -f $(VENV)/.installed-*
	@touch $@

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist loadgroup --durations=25

# The fast benches (quick modes; tables printed, JSON in bench/results/). PyTorch rows need the
# [bench] extra: pip install -e '.[bench]'.
bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.input_pipeline --quick
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.train_throughput --quick \
		$$($(PY) -c "import torch" 2>/dev/null || echo --reference=false)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m training.demo --output_dir=$(DEMO_DIR) $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) runs build *.egg-info
