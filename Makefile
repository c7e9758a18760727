# The two entry points of a fresh Debian/Ubuntu machine: `make train` and `make test`.
# Each installs what is missing (the software Vulkan driver, so that a machine without a GPU still has
# an adapter; for training, the Fashion-MNIST package), then calls cargo.

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DRIVER_PACKAGES := mesa-vulkan-drivers libvulkan1
DATA_PACKAGES := dataset-fashion-mnist

.PHONY: deps data train test bench compare adapters

# $(call apt_install,PACKAGES): installs those of PACKAGES that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.87 or newer (https://rustup.rs)"; exit 1; }
	$(call apt_install,$(DRIVER_PACKAGES))

data:
	$(call apt_install,$(DATA_PACKAGES))

train: deps data
	cargo run --release -- train $(ARGS)

# The export tests run the exported ONNX models in onnxruntime, a runtime this project did not write:
# installed from PyPI into target/onnx-venv the first time.
ONNX_VENV := target/onnx-venv

test: deps $(ONNX_VENV)/installed
	GPU_SIAMESE_ONNX_PYTHON=$(ONNX_VENV)/bin/python cargo test --release

$(ONNX_VENV)/installed:
	@python3 -c "import ensurepip, venv" 2>/dev/null || { echo "installing: python3 python3-venv"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3 python3-venv; }
	python3 -m venv $(ONNX_VENV)
	$(ONNX_VENV)/bin/pip install -q --disable-pip-version-check onnxruntime numpy
	@touch $@

bench: deps
	cargo run --release -- bench $(ARGS)

# TensorFlow, PyTorch and gpu-siamese timed on the same step in one run (installs the frameworks into
# bench/.venv from PyPI the first time).
compare: deps
	bench/compare.sh

adapters: deps
	cargo run --release -- adapters
