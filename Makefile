# The two entry points of a fresh Debian/Ubuntu machine: `make train` and `make test`.
# Each installs what is missing (the software Vulkan driver, so that a machine without a GPU still has
# an adapter), then calls cargo.

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := mesa-vulkan-drivers libvulkan1

.PHONY: deps train test bench adapters

deps:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.87 or newer (https://rustup.rs)"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

train: deps
	cargo run --release -- train $(ARGS)

test: deps
	cargo test --release

bench: deps
	cargo run --release -- bench $(ARGS)

adapters: deps
	cargo run --release -- adapters
