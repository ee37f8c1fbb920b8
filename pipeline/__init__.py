"""The Faust stream (sessionizer, inference worker) built on jump_core: the next milestone."""
