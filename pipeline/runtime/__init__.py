"""What talks to Kafka: the Faust apps, faust_compat (every Faust private access), the aiokafka worker loops,
topic and client helpers."""
