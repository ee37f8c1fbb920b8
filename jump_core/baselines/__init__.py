"""The baselines of the benchmark, one file per model, each implementing jump_core.contract.SessionModel."""
