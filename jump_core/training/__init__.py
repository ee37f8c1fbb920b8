"""The one training loop (train.py), the one evaluation (evaluate.py) and continuous training (continual.py)."""
