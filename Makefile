# Thin wrapper over npm (as VMAPI's Makefile). There is no eng submodule
# here: everything the build needs comes from package.json.

.PHONY: all build check lint format format-check typecheck test bench docs release publish clean

all:
	npm ci
	npm run build

build:
	npm run build

typecheck:
	npm run typecheck

lint:
	npm run lint

format:
	npm run format

format-check:
	npm run format:check

check: typecheck lint format-check

test:
	npm test

bench:
	npm run bench

docs:
	@echo "docs/index.md is the API reference (markdown, no build step)"

# The sapi image's package, sapi-pkg-<stamp>.tar.gz, at the repository
# root (tools/release.sh says what is in it and which variables it takes:
# NODE_INSTALL, NODE_PREBUILT_TARBALL, SDC_SCRIPTS_DIR).
release: build
	tools/release.sh $(if $(STAMP),--stamp $(STAMP))

# Copies the package to $(ENGBLD_BITS_DIR)/sapi/, where Triton's image
# build (buildimage) and the updates server's publishing take it from.
publish: release
	@if [ -z "$(ENGBLD_BITS_DIR)" ]; then echo "error: ENGBLD_BITS_DIR must be set for 'publish'" >&2; exit 1; fi
	mkdir -p $(ENGBLD_BITS_DIR)/sapi
	cp "$$(ls -t sapi-pkg-*.tar.gz | head -1)" $(ENGBLD_BITS_DIR)/sapi/

clean:
	rm -rf dist .tap build sapi-pkg-*.tar.gz
