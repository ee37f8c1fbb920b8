# The two commands of the README: `make demo` and `make test`. Both bootstrap a virtualenv from
# nothing (python3 -m venv + pip install of the pinned requirements) before running.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JUMP   := $(VENV)/bin/jump
STAMP  := $(VENV)/.installed
DEMO   ?= runs/demo
DEMO_CLICKS ?= 60000

.PHONY: demo test bench clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q -ra

# The offline half is file targets: a second `make demo` reuses the data and the trained models.
$(DEMO)/clicks.csv: | $(STAMP)
	@echo "== 1/7 synthetic clickstream ($(DEMO_CLICKS) clicks)"
	$(JUMP) synth --clicks $(DEMO_CLICKS) --seed 1 --out $@

$(DEMO)/data/meta.json: $(DEMO)/clicks.csv
	@echo "== 2/7 prepare: sessions, censored dwell (eq. 4), paper filter, 80/20 split"
	$(JUMP) prepare --format csv --session-col session_id --item-col item_id --time-col timestamp \
		$(DEMO)/clicks.csv --out $(DEMO)/data

$(DEMO)/jump_sigma10.ckpt: $(DEMO)/data/meta.json
	@echo "== 3/7 train JUMP with the paper's sigma = 10 (CPU budget 55 s)"
	$(JUMP) train --data $(DEMO)/data --out $@ --epochs 10 --lr 0.003 --time-budget 55

$(DEMO)/jump_sigma1.ckpt: $(DEMO)/data/meta.json
	@echo "== 4/7 train JUMP with sigma = 1 (Fig. 5: a larger 1/sigma^2 favours dwell prediction; budget 55 s)"
	$(JUMP) train --data $(DEMO)/data --out $@ --epochs 10 --lr 0.003 --time-budget 55 --sigma 1

demo: $(STAMP) $(DEMO)/jump_sigma10.ckpt $(DEMO)/jump_sigma1.ckpt
	@echo "== 5/7 evaluate: paper protocol (every context dwell known) and live (the latest dwell unknown, as in the stream)"
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump_sigma10.ckpt --protocol paper --json $(DEMO)/report/sigma10_paper.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump_sigma10.ckpt --protocol live --json $(DEMO)/report/sigma10_live.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump_sigma1.ckpt --protocol paper --json $(DEMO)/report/sigma1_paper.json
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump_sigma1.ckpt --protocol live --json $(DEMO)/report/sigma1_live.json
	@echo "== 6/7 summary"
	$(JUMP) report $(DEMO)/report/sigma10_paper.json $(DEMO)/report/sigma10_live.json \
		$(DEMO)/report/sigma1_paper.json $(DEMO)/report/sigma1_live.json --out $(DEMO)/report/summary.md
	@echo "== 7/7 the stream: embedded broker, sessionizer and inference workers, held-out sessions replayed live"
	$(JUMP) demo-stream --data $(DEMO)/data --model $(DEMO)/jump_sigma1.ckpt --out $(DEMO)/stream \
		--offline-json $(DEMO)/report/sigma1_live.json
	@echo "== demo done: reports and figures in $(DEMO)/report/, stream logs and summary in $(DEMO)/stream/"

bench: $(STAMP)
	$(JUMP) bench train

clean:
	rm -rf $(VENV) runs
