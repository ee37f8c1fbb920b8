"""The workers' logic without a Kafka client (sessionizer rules, inference engine and runner, trainer core):
unit-tested without a broker; pipeline/runtime moves records between these and Kafka."""
