"""How aduan runs: the command line, the all-in-one runner, the PostgreSQL and Kafka launchers."""
