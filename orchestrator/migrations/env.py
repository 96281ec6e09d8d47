from messaging.migrations import run_env
from orchestrator.tables import metadata

run_env(metadata)
