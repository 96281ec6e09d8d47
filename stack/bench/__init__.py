"""``make bench``: throughput, latency and cost of whole order sagas on this machine.

An open-loop generator places orders at a fixed rate on a fresh stack per rate, never polling
the saga API; at the end each saga is read once from the orchestrator's database and its
latency taken from its final change. Around the run the benchmark reads the services'
AWS request counters (``/metrics``), PostgreSQL's commits, and the processes' CPU, and samples
the outbox backlog and queue depths every second. The machine's own capacity (single-row
commits per second, SendMessageBatch calls per second) is measured in the same invocation.
"""
