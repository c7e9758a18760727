# The two entry points of a fresh Debian/Ubuntu machine: `make train` and `make test`.
# Each installs what is missing (Mesa's software drivers, so that a machine without a GPU still has
# adapters: lavapipe for Vulkan, llvmpipe for GL through EGL; for training, the Fashion-MNIST package;
# for the tests, Chromium, whose WebGPU compiles every shader with the browsers' WGSL compiler), then
# calls cargo.

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DRIVER_PACKAGES := mesa-vulkan-drivers libvulkan1
GL_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri
DATA_PACKAGES := dataset-fashion-mnist
BROWSER_PACKAGES := chromium

.PHONY: deps gl-deps browser-deps data train test bench compare adapters

# $(call apt_install,PACKAGES): installs those of PACKAGES that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.89 or newer (https://rustup.rs)"; exit 1; }
	$(call apt_install,$(DRIVER_PACKAGES))

data:
	$(call apt_install,$(DATA_PACKAGES))

train: deps data
	cargo run --release -- train $(ARGS)

# The export tests run the exported ONNX models in onnxruntime, a runtime this project did not write:
# installed from PyPI into target/onnx-venv the first time.
ONNX_VENV := target/onnx-venv

# Every test on Vulkan, then every test that touches the GPU again on GL: two shader paths (naga to
# SPIR-V for Mesa's Vulkan driver, naga to GLSL for its GL one), each with its own compiler and limits.
# Each leg first names its adapter; a leg without one stops with the packages to install. The first leg
# also compiles every shader module in headless Chromium (tests/browser_wgsl.rs): Tint, the browsers'
# WGSL compiler, applies the uniformity rules naga does not yet check.
GPU_TESTS := --test kernels --test twin --test keras_golden --test search --test export --test model_cli \
	--test train_cli --test folders --test robustness
BIN := target/release/gpu-siamese

# Mesa's drivers print "error: XDG_RUNTIME_DIR is invalid or not set" when it is unset (the program
# gives itself one; the test binaries get this one).
RUNTIME_DIR := $(CURDIR)/target/runtime

test: deps gl-deps browser-deps $(ONNX_VENV)/installed
	cargo build --release --quiet
	@mkdir -p -m 700 $(RUNTIME_DIR)
	@picked=$$(WGPU_BACKEND=vulkan $(BIN) adapters --picked) || exit 1; echo "== all tests; the GPU ones on $$picked"
	XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-$(RUNTIME_DIR)} WGPU_BACKEND=vulkan GPU_SIAMESE_ONNX_PYTHON=$(ONNX_VENV)/bin/python cargo test --release
	@picked=$$(WGPU_BACKEND=gl $(BIN) adapters --picked) || exit 1; echo "== the GPU tests again, on $$picked"
	XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-$(RUNTIME_DIR)} WGPU_BACKEND=gl GPU_SIAMESE_ONNX_PYTHON=$(ONNX_VENV)/bin/python cargo test --release $(GPU_TESTS)

gl-deps:
	$(call apt_install,$(GL_PACKAGES))

browser-deps:
	$(call apt_install,$(BROWSER_PACKAGES))

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
