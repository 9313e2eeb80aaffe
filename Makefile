# Build flags shared by the README, the Dockerfile and CI.
GOFLAGS_BUILD := -trimpath -ldflags="-s -w"
FUZZTIME ?= 10s

.PHONY: build run test fuzz bench

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/offboard ./cmd/offboard

run:
	go run ./cmd/offboard serve

test:
	go test -count=1 -timeout 30m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench:
	go test -run '^$$' -bench . -benchtime 2s ./...
