GO  ?= go
BUF := $(GO) tool -modfile=tools/go.mod buf

.PHONY: test deps vet generate check-generate lint bench build fhir-elements schemas

# The one command that runs every test; CI calls it too.
test: deps vet
	$(GO) test -count=1 -timeout 30m ./...

deps:
	bash test/deps.sh

vet:
	$(GO) vet ./...

build:
	$(GO) build -o bin/chaperone ./cmd/chaperone

# Regenerates the Go code from proto/ (offline once the tools module is downloaded).
generate:
	$(BUF) format -w proto
	$(BUF) generate

# Fails when the committed generated code or proto formatting differs from a fresh run.
check-generate: generate
	$(BUF) lint
	git diff --exit-code -- proto

# Rewrites the published policy schemas in docs/schema from the engine's
# model (a CLI test fails while they differ).
schemas:
	$(GO) run ./cmd/chaperone schema --format cedar > docs/schema/chaperone.cedarschema
	$(GO) run ./cmd/chaperone schema --format rego-json > docs/schema/rego-input.schema.json

# Regenerates fhir/elements/data from the FHIR definition packages on npm
# (needs npm and the network; tests use the committed tables).
fhir-elements:
	bash fhir/elements/internal/gen/generate.sh

lint:
	$(BUF) lint
	$(BUF) format -d --exit-code proto

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bench/...
