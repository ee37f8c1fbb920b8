# The two commands of the README: `make demo` and `make test`. Both bootstrap a virtualenv from
# nothing (python3 -m venv + pip install of the pinned requirements) before running.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JUMP   := $(VENV)/bin/jump
STAMP  := $(VENV)/.installed
DEMO   ?= runs/demo
DEMO_CLICKS ?= 60000

.PHONY: demo test lint format bench bench-gpu benchmark benchmark-scale clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

# `make test` lints first: a style or pyflakes error (an undefined name, an unused variable) fails it.
test: lint
	-@bash scripts/ensure-prometheus.sh
	$(PY) -m pytest -q -ra --durations=20

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrites files: ruff's safe fixes, then its formatter.
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The offline half is file targets: a second `make demo` reuses the data and the trained models.
$(DEMO)/clicks.csv: | $(STAMP)
	@echo "== 1/7 synthetic clickstream ($(DEMO_CLICKS) clicks)"
	$(JUMP) synth --clicks $(DEMO_CLICKS) --seed 1 --out $@

$(DEMO)/data/meta.json: $(DEMO)/clicks.csv
	@echo "== 2/7 prepare: sessions, censored dwell (eq. 4), long tail kept, 80/20 split"
	$(JUMP) prepare --format csv --session-col session_id --item-col item_id --time-col timestamp \
		$(DEMO)/clicks.csv --out $(DEMO)/data

$(DEMO)/jump_paper.ckpt: $(DEMO)/data/meta.json
	@echo "== 3/7 train JUMP with the paper's settings (--paper: sigma = 10 fixed, eq. 17 as printed; CPU budget 55 s)"
	$(JUMP) train --data $(DEMO)/data --out $@ --paper --lr 0.003 --time-budget 55

$(DEMO)/jump.ckpt: $(DEMO)/data/meta.json
	@echo "== 4/7 train JUMP as served (jump train's defaults: trained as served, sigma learned; CPU budget 55 s)"
	$(JUMP) train --data $(DEMO)/data --out $@ --time-budget 55

demo: $(STAMP) $(DEMO)/jump_paper.ckpt $(DEMO)/jump.ckpt
	@echo "== 5/7 evaluate: paper protocol (every context dwell known), live (the latest dwell unknown, as in the stream), elapsed"
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump_paper.ckpt --protocol paper --json $(DEMO)/report/paper_paper.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump_paper.ckpt --protocol live --json $(DEMO)/report/paper_live.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump.ckpt --protocol paper --json $(DEMO)/report/served_paper.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump.ckpt --protocol live --json $(DEMO)/report/served_live.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump.ckpt --protocol elapsed --json $(DEMO)/report/served_elapsed.json
	@echo "== 6/7 summary"
	$(JUMP) report $(DEMO)/report/paper_paper.json $(DEMO)/report/paper_live.json \
		$(DEMO)/report/served_paper.json $(DEMO)/report/served_live.json --out $(DEMO)/report/summary.md
	@echo "== 7/7 the stream: embedded broker, sessionizer and inference workers, held-out sessions replayed live"
	$(JUMP) demo-stream --data $(DEMO)/data --model $(DEMO)/jump.ckpt --out $(DEMO)/stream \
		--offline-json $(DEMO)/report/served_live.json
	@echo "== demo done: reports and figures in $(DEMO)/report/, stream logs and summary in $(DEMO)/stream/"

bench: $(STAMP)
	$(JUMP) bench train

# The GPU path (README "GPU benchmark"): CUDA vs CPU predictions, inference predictions/s, training clicks/s,
# peak CUDA memory; < 8 min on one GPU. BENCH_GPU_ARGS="--device cpu --quick" runs it small on a CPU.
BENCH_GPU_ARGS ?=
bench-gpu: $(STAMP)
	$(PY) scripts/bench_gpu.py --json $(BENCH)/gpu/bench_gpu.json $(BENCH_GPU_ARGS)

# docs/RESULTS.md: the benchmark on the real samples in ../shared/data (each skipped when absent),
# main tables (RecSys15 extract: 1 seed; the three small samples: 5 seeds), then the RecSys15 extras.
SHARED ?= ../shared/data
BENCH  ?= runs/bench
benchmark: $(STAMP)
	@set -e; \
	prep() { name=$$1; shift; [ -e "$$2" ] || { echo "skip $$name: $$2 not found"; return 1; }; \
	  [ -f $(BENCH)/$$name/data/meta.json ] || $(JUMP) prepare "$$@" --out $(BENCH)/$$name/data; }; \
	if prep rsc15 --format rsc15-prepared $(SHARED)/yoochoose-rsc15/session-rec-100k/yoochoose-clicks-100k_train_full.txt.gz \
	     --test $(SHARED)/yoochoose-rsc15/session-rec-100k/yoochoose-clicks-100k_test.txt; then \
	  $(JUMP) benchmark --data $(BENCH)/rsc15/data --models all --json $(BENCH)/final/rsc15/rsc15.json --no-progress; fi; \
	for spec in diginetica:diginetica-cikm16/sr-gnn-sample/sample_train-item-views.csv \
	            reddit:reddit/kaggle-head-sample/reddit_sample.csv retailrocket:retailrocket/sr-gtm-sample/sample_retailrocket.csv; do \
	  name=$${spec%%:*}; file=$(SHARED)/$${spec#*:}; \
	  if prep $$name --format $$name $$file; then for s in 0 1 2 3 4; do \
	    $(JUMP) benchmark --data $(BENCH)/$$name/data --models all --seed $$s --json $(BENCH)/final/$$name/$${name}_seed$$s.json --no-progress; \
	  done; fi; \
	done; \
	if [ -f $(BENCH)/rsc15/data/meta.json ]; then \
	  $(JUMP) benchmark --data $(BENCH)/rsc15/data --models jump,narm,gru4rec_bprmax --ablations --sweeps sigma,dim \
	    --epochs 10 --patience 2 --json $(BENCH)/rsc15/extras/rsc15_extras.json --no-progress; \
	  $(JUMP) benchmark --data $(BENCH)/rsc15/data --models jump --config configs/benchmark/investigate.yaml --ablations \
	    --json $(BENCH)/rsc15/investigate/rsc15_investigate.json --no-progress; fi; \
	if [ -f $(BENCH)/diginetica/data/meta.json ]; then \
	  $(JUMP) benchmark --data $(BENCH)/diginetica/data --models jump --config configs/benchmark/investigate.yaml --ablations \
	    --json $(BENCH)/diginetica/investigate/diginetica_investigate.json --no-progress; fi; \
	$(JUMP) benchmark-summary $(BENCH)/final/*/*.json --names-from-dirs --out $(BENCH)/final/summary.md

# docs/RESULTS.md, scale: >= 5 M synthetic clicks, one configuration per model (configs/benchmark/scale.yaml).
benchmark-scale: $(STAMP)
	[ -f $(BENCH)/synth5m/clicks.csv ] || $(JUMP) synth --clicks 5000000 --seed 1 --out $(BENCH)/synth5m/clicks.csv
	[ -f $(BENCH)/synth5m/data/meta.json ] || $(JUMP) prepare --format csv --session-col session_id --item-col item_id \
		--time-col timestamp $(BENCH)/synth5m/clicks.csv --out $(BENCH)/synth5m/data
	$(JUMP) benchmark --data $(BENCH)/synth5m/data --config configs/benchmark/scale.yaml --max-test-sessions 5000 \
		--models pop,item_median,item_lognormal,sknn,vsknn,gru4rec_bprmax,narm,jump,jump_variant \
		--json $(BENCH)/synth5m/report/synth5m.json --no-progress

# `jump bench stream --workload sessions`: the sessionizer against Quix Streams and Bytewax. The peers
# (the optional `bench` extra) get their own virtualenv, .venv-bench, pinned by requirements-bench.txt:
# installed next to the project they would not conflict, but faust-streaming would pick up orjson.
BENCH_VENV    ?= .venv-bench
BENCH_STAMP   := $(BENCH_VENV)/.installed
SESSIONS_JSON ?= runs/bench-sessions/sessions.json
SESSIONS_PNG  ?= docs/results/stream_sessions.png
.PHONY: bench-peers-venv bench-stream-peers

bench-peers-venv: $(BENCH_STAMP)

$(BENCH_STAMP): requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --disable-pip-version-check -q -r requirements-bench.txt
	touch $@

bench-stream-peers: $(STAMP) $(BENCH_STAMP)
	JUMP_BENCH_PYTHON=$(BENCH_VENV)/bin/python $(JUMP) bench stream --workload sessions \
		--json $(SESSIONS_JSON) --png $(SESSIONS_PNG)

clean:
	rm -rf $(VENV) runs
