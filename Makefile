# Thin wrapper over npm (as VMAPI's Makefile). There is no eng submodule
# here: everything the build needs comes from package.json.

.PHONY: all build check lint format format-check typecheck test bench docs release clean

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

release: build
	tar -czf sapi-ts.tgz dist node_modules sapi_manifests smf etc package.json

clean:
	rm -rf dist .tap sapi-ts.tgz
