# Ingot — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

PROTO_DEPS := build/proto-deps
PROTO_SRC := $(shell find proto -name '*.proto')

.PHONY: help deps proto check test demo ci clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## Install npm packages (Node.js 24 comes from the `node` package)

build/descriptors.binpb: node_modules/.installed buf.yaml buf.gen.yaml $(PROTO_SRC)
	rm -rf build/gen $(PROTO_DEPS)
	mkdir -p $(PROTO_DEPS)/google/rpc $(PROTO_DEPS)/grpc/health/v1 $(PROTO_DEPS)/grpc/reflection/v1 $(PROTO_DEPS)/grpc/reflection/v1alpha
	cp node_modules/google-proto-files/google/rpc/{status,error_details,code}.proto $(PROTO_DEPS)/google/rpc/
	cp node_modules/grpc-health-check/proto/health/v1/health.proto $(PROTO_DEPS)/grpc/health/v1/
	cp node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto $(PROTO_DEPS)/grpc/reflection/v1/
	cp node_modules/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto $(PROTO_DEPS)/grpc/reflection/v1alpha/
	buf lint proto
	buf generate
	buf build --as-file-descriptor-set -o $@

proto: build/descriptors.binpb ## Generate TypeScript and the reflection descriptor set from proto/

check: proto ## Type-check and lint
	tsc -p tsconfig.json
	biome check .

test: proto ## Run the whole suite (starts a throwaway PostgreSQL; installs Debian packages when root)
	test/support/run-tests.sh

demo: proto agent ## (root) A lab of virtual bare-metal nodes: register, boot three instances to ACTIVE, delete one, tear down
	tools/demo/demo.sh

.PHONY: demo-vm
demo-vm: proto agent ## (root) Two QEMU VMs PXE-boot the bootstrap image, get the test image written, boot it from disk; tear down
	tools/demo/demo-vm.sh

ci: ## Exactly what CI runs
	bash .ci/run

clean: ## Remove build products and the demo's data
	rm -rf build ingot-data

AGENT_SRC := $(shell find agent -name '*.ts')

build/ingot-agent: build/descriptors.binpb $(AGENT_SRC)
	node agent/build.ts

.PHONY: agent
agent: build/ingot-agent ## Build the on-node agent: build/ingot-agent, one executable, no Node.js needed on the node

.PHONY: bench-imaging
bench-imaging: proto agent ## Imaging (root): deploy a 2 GiB image raw and zstd vs curl|dd on one loop device; agent RSS; progress latency
	@bench/imaging/run.sh

.PHONY: bench-capture
bench-capture: proto agent ## Capture (root): a 2 GiB loop disk into the image store vs dd | nc into nc -l, over a 1 Gbit/s link and loopback; a 90%-empty disk with --to-last-partition and zstd
	@bench/capture/run.sh

.PHONY: bench-power
bench-power: proto ## Power: BMC latency per driver and a 100-node power-on wave against simulated BMCs
	@bench/power/run.sh

.PHONY: bench-network
bench-network: proto ## Network: 50-port VLAN flip batched vs one commit per port (Junos test switch); dnsmasq reload with 1,000 hosts
	@bench/network/run.sh

.PHONY: bench-scheduler
bench-scheduler: proto ## Scheduler: 11,000 hosts in a throwaway PostgreSQL; p50/p99 in-process and over gRPC, boots/s
	@bench/scheduler/run.sh

.PHONY: bench-provision
bench-provision: proto agent ## Provisioning (root): 1, 10, 50 virtual nodes booted at once to ACTIVE; wall time, per-step p50/max, RAM, CPU in a throwaway PostgreSQL (BENCH_ARGS='--sizes 1,10 --backend pglite')
	@bench/provision/run.sh $(BENCH_ARGS)

.PHONY: bootstrap
bootstrap: ## The bootstrap Linux image: build/bootstrap/{vmlinuz,initrd.img} from Debian's kernel + busybox, or TINYCORE=core.gz remastered; incremental
	@TINYCORE='$(TINYCORE)' bootstrap/build.sh
