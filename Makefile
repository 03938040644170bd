# Torito: build, run, test, bench.
#
#   make images      build every example: build/NAME.elf (the kernel as linked, to boot,
#                    with its symbols) and build/NAME.debug (its debug information)
#   make run-hello   boot examples/hello in QEMU (microvm, PVH)
#   make run-kv      boot examples/kv (Redis protocol) with host port 6379 forwarded
#   make test        everything CI checks: lints, host tests, images, QEMU tests
#   make bench       the benchmarks in bench/ (not part of the tests)
#   make oci NAME=echo [OCI_TYPE=linux|hermit] [OCI_HYPERVISOR=qemu|firecracker|cloud-hypervisor]
#                    write build/oci/NAME, an OCI image layout of build/NAME.elf with urunc's
#                    annotations, to push with skopeo and run in Kubernetes (docs/deploy.md)
#   make new-service NAME=myapp DIR=path
#                    write a service crate at path/myapp that uses this checkout
#                    (docs/services.md); `cargo run --release` there boots it
#
# Every target first runs `setup`, which installs what is missing (as root or with sudo)
# or names the exact command to run.

TARGET   := x86_64-unknown-none
EXAMPLES := hello faults echo echo-blocking intercore random vsock-echo block console-echo http files kv
IMAGES   := $(EXAMPLES:%=build/%.elf)
HOST_CRATES := -p torito-boot -p torito-executor -p torito-netstack -p torito-virtio -p torito -p torito-macros
DEBIAN_PACKAGES := qemu-system-x86 grub-pc-bin grub-common xorriso mtools binutils netcat-openbsd \
                   iproute2 python3 skopeo curl qemu-system-common e2fsprogs redis-tools
QEMU_ARGS ?=

# Shorter source paths in panic locations (they are strings in the image): a registry
# crate's file shows as crates/NAME-VERSION/..., wherever CARGO_HOME is. Cargo adds these
# flags to the ones in .cargo/config.toml for the bare-metal target; the path is computed
# here because that file cannot name a home directory without tying it to one machine.
CARGO_REGISTRY_SOURCES = $(wildcard $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src/*)
export CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS += $(patsubst %,--remap-path-prefix=%=crates,$(CARGO_REGISTRY_SOURCES))

.PHONY: all setup images run-hello run-echo run-http run-kv test lint host-test qemu-test bench clean

all: images

setup:
	@./qemu/setup.sh $(DEBIAN_PACKAGES)

# build/NAME.elf is the kernel as linked, the image to boot, with its symbol table but no
# debug information: a backtrace's addresses resolve on the very file that booted
# (`nm`, `addr2line -f`). build/NAME.debug holds the debug information (line tables);
# NAME.elf names it (.gnu_debuglink), so `addr2line -e build/NAME.elf ADDRESS` also gives
# file and line.
images: setup
	cargo build --release --target $(TARGET) $(EXAMPLES:%=-p %)
	@mkdir -p build
	@for example in $(EXAMPLES); do \
	    linked=target/$(TARGET)/release/$$example && \
	    objcopy --only-keep-debug $$linked build/$$example.debug && \
	    objcopy --strip-debug --add-gnu-debuglink=build/$$example.debug $$linked build/$$example.elf \
	        || exit 1; \
	done

run-hello: images
	./qemu/run.sh build/hello.elf $(QEMU_ARGS)

# Boots the async echo service with host port 127.0.0.1:5555 forwarded to it.
run-echo: images
	@echo "run-echo: booting examples/echo; once it prints 'echo: listening on port 5555', try:"
	@echo "run-echo:     nc 127.0.0.1 5555        (type lines; they come back; Ctrl-C to quit)"
	@echo "run-echo: stop the VM with Ctrl-C here."
	./qemu/run.sh build/echo.elf --forward 5555:5555 $(QEMU_ARGS)

# Boots the HTTP service with host port 127.0.0.1:8080 forwarded to it.
run-http: images
	@echo "run-http: booting examples/http; once it prints 'http: listening on port 8080', try:"
	@echo "run-http:     curl -i http://127.0.0.1:8080/api/counter    (and -X POST to add one)"
	@echo "run-http: stop the VM with Ctrl-C here."
	./qemu/run.sh build/http.elf --forward 8080:8080 $(QEMU_ARGS)

# Boots the Redis-protocol store with host port 127.0.0.1:6379 forwarded to it.
run-kv: images
	@echo "run-kv: booting examples/kv; once it prints 'kv: listening on port 6379', try:"
	@echo "run-kv:     redis-cli set greeting hello; redis-cli get greeting"
	@echo "run-kv:     redis-benchmark -t set,get -q"
	@echo "run-kv: stop the VM with Ctrl-C here."
	./qemu/run.sh build/kv.elf --forward 6379:6379 $(QEMU_ARGS)

lint: setup
	cargo fmt --all --check
	./qemu/check-unsafe-list.sh
	cargo clippy $(HOST_CRATES) -p torito-qemu-tests --all-targets -- -D warnings
	cargo clippy -p kv --lib --tests -- -D warnings
	cargo clippy --target $(TARGET) -p torito $(EXAMPLES:%=-p %) -p torito-executor -p torito-boot -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p torito-boot -p torito-executor -p torito-netstack -p torito-virtio
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --target $(TARGET) -p torito

host-test: setup
	cargo test $(HOST_CRATES)
	cargo test -p kv --lib

qemu-test: images
	cargo test -p torito-qemu-tests

test: lint host-test qemu-test

bench: images
	./bench/run.sh

# An OCI image layout for urunc (Kubernetes) and registries (qemu/oci.py, docs/deploy.md).
OCI_TYPE ?= linux
OCI_HYPERVISOR ?= qemu
.PHONY: oci
oci: images
	@[ -n "$(NAME)" ] || { echo "oci: say which image, e.g. make oci NAME=echo" >&2; exit 2; }
	python3 qemu/oci.py build --kernel build/$(NAME).elf --name $(NAME) --out build/oci/$(NAME) \
	    --type $(OCI_TYPE) --hypervisor $(OCI_HYPERVISOR)

# Serves DIR (a directory of yours) over HTTP on host port 127.0.0.1:8080, through
# virtio-fs (docs/files.md).
.PHONY: run-files
run-files: images
	@[ -n "$(DIR)" ] || { echo "run-files: say which directory, e.g. make run-files DIR=." >&2; exit 2; }
	@echo "run-files: serving $(DIR); once it prints 'files: serving on port 8080', try:"
	@echo "run-files:     curl http://127.0.0.1:8080/"
	./qemu/run.sh build/files.elf --mem 256M --share "$(DIR)" \
	    --forward 8080:8080 --append "fs.share=share:/srv" $(QEMU_ARGS)

# A service crate of your own, outside this repository (qemu/new-service.sh).
.PHONY: new-service
new-service:
	@[ -n "$(NAME)" ] && [ -n "$(DIR)" ] || { \
	    echo "new-service: say what and where, e.g. make new-service NAME=myapp DIR=.." >&2; exit 2; }
	./qemu/new-service.sh "$(NAME)" "$(DIR)" $(PORT)

clean:
	cargo clean
	rm -rf build
