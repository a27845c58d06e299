#!/usr/bin/env bash
# WOMD read+convert throughput (one core) and cache bytes per scene; args: shards (default: shared sample), --json
OMP_NUM_THREADS=1 exec drope-bench read "$@"
