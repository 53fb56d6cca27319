# edgeq — every target installs what it needs first and is safe to re-run.
PY      := .venv/bin/python
STAMP   := .venv/.edgeq-installed
APT_STAMP := .venv/.apt-installed
APT_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test bench bench-vs-tflm lint mutation break-check clean

setup: $(STAMP) $(APT_STAMP)

# apt packages: the Arm toolchain, QEMU and Fashion-MNIST (the demo's data).
$(APT_STAMP):
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi
	@mkdir -p .venv && touch $@

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[full,dev]'
	@touch $@

demo: setup
	$(PY) -m edgeq.cli build --board cortex-m7 --out out/demo

test: setup
	bash scripts/run_tests.sh

bench: setup
	$(PY) benchmarks/run.py --out BENCHMARKS.md

# edgeq's firmware against TFLM + CMSIS-NN (../shared/tflm-cmsis-nn) under QEMU (issue 17).
bench-vs-tflm: setup
	$(PY) benchmarks/run.py --only vs_tflm --out BENCHMARKS.md

# Mutation testing of the integer core (pyproject's [tool.mutmut]); long: not part of `make test`.
mutation: setup
	$(PY) -m pip install -q 'mutmut==3.8.1'
	rm -rf mutants
	EDGEQ_SHARED=$(abspath ../shared) TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/mutmut run --max-children 2
	.venv/bin/mutmut results

# Each weak-test case of issue 18 broken on purpose in a copy of HEAD: its tests must fail.
break-check: setup
	EDGEQ_SHARED=$(abspath ../shared) $(PY) scripts/break_on_purpose.py

lint: setup
	.venv/bin/ruff check edgeq tests benchmarks

clean:
	rm -rf out build dist *.egg-info .pytest_cache mutants
