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

demo: $(STAMP)
	@echo "== 1/5 synthetic clickstream ($(DEMO_CLICKS) clicks)"
	$(JUMP) synth --clicks $(DEMO_CLICKS) --seed 1 --out $(DEMO)/clicks.csv
	@echo "== 2/5 prepare: sessions, censored dwell (eq. 4), paper filter, 80/20 split"
	$(JUMP) prepare --format csv --session-col session_id --item-col item_id --time-col timestamp \
		$(DEMO)/clicks.csv --out $(DEMO)/data
	@echo "== 3/5 train JUMP (CPU budget: 110 s)"
	$(JUMP) train --data $(DEMO)/data --out $(DEMO)/jump.ckpt --epochs 10 --lr 0.003 --time-budget 110
	@echo "== 4/5 evaluate, paper protocol (every context dwell known)"
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump.ckpt --protocol paper --json $(DEMO)/report/paper.json
	@echo "== 5/5 evaluate, live protocol (the latest click's dwell unknown, as in the stream)"
	$(JUMP) evaluate --data $(DEMO)/data --model $(DEMO)/jump.ckpt --protocol live --json $(DEMO)/report/live.json
	@echo "== demo done: reports and figures in $(DEMO)/report/"
	@ls -1 $(DEMO)/report/

bench: $(STAMP)
	$(JUMP) bench train

clean:
	rm -rf $(VENV) runs
