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

.PHONY: deps gl-deps browser-deps wasm-deps data train test bench compare browser-compare adapters web web-build

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

test: deps gl-deps browser-deps $(ONNX_VENV)/installed web-build
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

# The page (web/): the core built for wasm32 with wgpu's WebGPU back end, bound to JavaScript by
# wasm-bindgen, beside the page's own files, in target/web. Where rustup has the wasm32 target it builds
# with it; otherwise with Debian's rustc-web (a rustc whose std sources build for wasm32), cargo-web
# and lld's wasm-ld. wasm-bindgen-cli comes from crates.io at the version Cargo.lock pins (the two must
# match), into target/tools.
WEB_SITE := target/web
WASM_OUT := target/wasm
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)
WASM_BINDGEN := target/tools/bin/wasm-bindgen
RUSTUP_WASM := $(shell rustup target list --installed 2>/dev/null | grep -x wasm32-unknown-unknown)
WASM_PACKAGES := $(if $(RUSTUP_WASM),,rustc-web cargo-web rust-web-src lld-19)
WASM_LIB := $(WASM_OUT)/wasm32-unknown-unknown/release/gpu_siamese_web.wasm

wasm-deps:
	$(call apt_install,$(WASM_PACKAGES))
	@[ -x $(WASM_BINDGEN) ] && $(WASM_BINDGEN) --version | grep -qx "wasm-bindgen $(WASM_BINDGEN_VERSION)" || \
		{ echo "installing: wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --root target/tools; }

web-build: wasm-deps
ifneq ($(RUSTUP_WASM),)
	CARGO_TARGET_DIR=$(WASM_OUT) cargo build --release --quiet --target wasm32-unknown-unknown -p gpu-siamese-web
else
	PATH=/usr/bin:$$PATH RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=wasm-ld-19" CARGO_TARGET_DIR=$(WASM_OUT) \
		cargo build --release --quiet -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown -p gpu-siamese-web
endif
	@mkdir -p $(WEB_SITE)
	$(WASM_BINDGEN) --target web --no-typescript --out-dir $(WEB_SITE)/pkg $(WASM_LIB)
	cp web/page/* $(WEB_SITE)/
	@echo "the page: $(WEB_SITE) ($$(du -h $(WEB_SITE)/pkg/gpu_siamese_web_bg.wasm | cut -f1) of WebAssembly)"

# Serves the page and Fashion-MNIST on http://127.0.0.1:8080/ (ARGS="--port 9000 --data DIR" to change).
web: deps web-build
	cargo run --release -- web $(ARGS)

# The tutorial's step in one headless Chromium: the page's WebAssembly beside TensorFlow.js on its WebGPU
# back end (npm packages installed into bench/browser_compare/node_modules the first time).
browser-compare: browser-deps web-build
	@[ -d bench/browser_compare/node_modules/@tensorflow/tfjs-backend-webgpu ] || (cd bench/browser_compare && npm ci --no-audit --no-fund)
	python3 bench/browser_compare/run.py $(ARGS)
