"""Development and benchmarking tools, not deployed: embedded broker, replay, tail, worker processes, demo,
stream benchmark."""
